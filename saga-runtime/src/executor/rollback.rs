//! Reverse-order unwinding.
//!
//! # Order
//!
//! Completed steps are compensated latest first. Steps without a compensation (the last step, a
//! pivot, a `nothing_to_undo` step) are skipped. When a compensation fails for good, rollback
//! stops there by default, because an older step's undo may depend on the newer one having been
//! undone; the saga ends compensation-failed and an operator can retry it, which continues from
//! the same step. Under `#[saga(best_effort_rollback)]` rollback goes on with the older steps and
//! reports every failure.

use std::sync::Arc;

use super::attempt::{AttemptPlan, Attempts, AttemptsEnded};
use super::{step_at, Run};
use crate::event::{RollbackReason, SagaEventKind};
use crate::outcome::{CompensationFailure, RollbackCause};
use crate::step::{Phase, StepDef, StepFn};
use crate::store::{CompletedStep, Progress};
use crate::{Saga, SagaError, SagaOutcome, SagaStatus, StepEnum};

type Outcome<S> = SagaOutcome<<S as Saga>::Context, <S as Saga>::Step>;

/// A completed step still to compensate: its position in `completed`, its step position, and its
/// compensation.
type Pending<S> = (
    usize,
    usize,
    StepFn<<S as Saga>::Context, <S as Saga>::Deps>,
);

impl<S: Saga> Run<S> {
    /// Starts rolling back for `cause`.
    pub(super) async fn rollback(
        &mut self,
        cause: RollbackCause<usize>,
    ) -> Result<Outcome<S>, SagaError> {
        let progress = Progress::RollbackStarted(cause.clone());
        self.announce_rollback(cause, Some(progress)).await
    }

    /// Continues the rollback of a compensation-failed saga (an operator's retry).
    pub(super) async fn resume_rollback(
        &mut self,
        cause: RollbackCause<usize>,
    ) -> Result<Outcome<S>, SagaError> {
        self.announce_rollback(cause, None).await
    }

    /// Records "compensation started" (with `progress`), then compensates.
    async fn announce_rollback(
        &mut self,
        cause: RollbackCause<usize>,
        progress: Option<Progress>,
    ) -> Result<Outcome<S>, SagaError> {
        let status = self
            .next_to_compensate()
            .map(|(_, step, _)| SagaStatus::Compensating { step });
        let reason = reason::<S>(&cause);
        self.write(
            SagaEventKind::CompensationStarted { reason },
            status,
            false,
            progress,
        );
        self.compensate(cause).await
    }

    /// The latest completed step still to compensate.
    fn next_to_compensate(&self) -> Option<Pending<S>> {
        self.pending_compensations().next()
    }

    /// Completed steps still to compensate, latest first.
    fn pending_compensations(&self) -> impl Iterator<Item = Pending<S>> + '_ {
        self.completed
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, done)| !done.compensated)
            .filter_map(|(pos, done)| {
                def_of::<S>(done)
                    .compensate
                    .map(|func| (pos, done.step, func))
            })
    }

    pub(super) async fn compensate(
        &mut self,
        cause: RollbackCause<usize>,
    ) -> Result<Outcome<S>, SagaError> {
        let mut failures = Vec::new();
        let mut uncompensated = Vec::new();
        let pending: Vec<_> = self.pending_compensations().collect();
        let mut remaining = pending.iter();
        while let Some(&(pos, step, func)) = remaining.next() {
            let def = def_of::<S>(&self.completed[pos]);
            let plan = AttemptPlan {
                name: def.name(),
                phase: Phase::Compensation,
                func,
                timeout: def.policy().timeout,
                backoff: def.policy().backoff,
                attempts: Attempts::compensation(def.policy().compensation_retries),
                status: SagaStatus::Compensating { step },
            };
            match self.attempts(&plan).await? {
                AttemptsEnded::Succeeded(ctx, attempt, _) => {
                    self.committed = Arc::new(ctx);
                    self.completed[pos].compensated = true;
                    let status = self
                        .next_to_compensate()
                        .map(|(_, next, _)| SagaStatus::Compensating { step: next });
                    self.write(
                        SagaEventKind::StepCompensated {
                            step: def.name().into(),
                            attempt,
                        },
                        status,
                        true,
                        Some(Progress::Compensated(pos)),
                    );
                }
                AttemptsEnded::Failed(error, attempt)
                | AttemptsEnded::Stopped(_, error, attempt) => {
                    self.record(
                        SagaEventKind::CompensationFailed {
                            step: def.name().into(),
                            attempt,
                            error: error.clone(),
                        },
                        None,
                    );
                    failures.push(CompensationFailure {
                        step: step_at::<S>(step),
                        error,
                    });
                    uncompensated.push(step_at::<S>(step));
                    if !S::OPTIONS.best_effort_rollback {
                        uncompensated.extend(remaining.by_ref().map(|&(_, s, _)| step_at::<S>(s)));
                    }
                }
            }
        }
        let cause = cause_of::<S>(cause);
        let Some(first) = failures.first() else {
            let duration = self.started.elapsed();
            self.record(
                SagaEventKind::SagaCompensated { duration },
                Some(SagaStatus::Compensated),
            );
            self.flush().await?;
            return Ok(SagaOutcome::Compensated {
                id: self.id,
                cause,
                ctx: self.take_ctx(),
            });
        };
        self.record(
            SagaEventKind::SagaFailed {
                step: first.step.name().into(),
                error: first.error.clone(),
                compensation: true,
            },
            Some(SagaStatus::CompensationFailed {
                step: first.step.index(),
            }),
        );
        self.flush().await?;
        Ok(SagaOutcome::CompensationFailed {
            id: self.id,
            cause,
            failures,
            uncompensated,
            ctx: self.take_ctx(),
        })
    }
}

/// The definition whose compensation undoes a completed step: the fallback's when the fallback
/// completed in the step's place.
pub(super) fn def_of<S: Saga>(done: &CompletedStep) -> StepDef<S::Context, S::Deps> {
    let def = S::steps()[done.step];
    match (done.via_fallback, def.fallback) {
        (true, Some(fallback)) => fallback(),
        _ => def,
    }
}

fn cause_of<S: Saga>(cause: RollbackCause<usize>) -> RollbackCause<S::Step> {
    match cause {
        RollbackCause::StepFailed { step, error } => RollbackCause::StepFailed {
            step: step_at::<S>(step),
            error,
        },
        RollbackCause::Cancelled => RollbackCause::Cancelled,
        RollbackCause::DeadlineExceeded => RollbackCause::DeadlineExceeded,
    }
}

fn reason<S: Saga>(cause: &RollbackCause<usize>) -> RollbackReason {
    match cause {
        RollbackCause::StepFailed { step, error } => RollbackReason::StepFailed {
            step: S::steps()[*step].name().into(),
            error: error.clone(),
        },
        RollbackCause::Cancelled => RollbackReason::Cancelled,
        RollbackCause::DeadlineExceeded => RollbackReason::DeadlineExceeded,
    }
}
