//! How a saga ends: the final transition recorded, and the typed outcome built from the state.
//!
//! # Order
//!
//! Completed steps are compensated latest first (a parallel group's members at once). Steps
//! without a compensation (a pivot, a `nothing_to_undo` step, a last step that is not in a
//! group) are skipped. When a compensation fails for good, rollback
//! stops there by default, because an older step's undo may depend on the newer one having been
//! undone; the saga ends compensation-failed and an operator can retry it, which continues from
//! the same step. Under `#[saga(best_effort_rollback)]` rollback goes on with the older steps and
//! reports every failure.

use super::{step_at, Outcome, Run, Table};
use crate::event::SagaEventKind;
use crate::machine::{pending_compensations, Change, Definition, SagaState};
use crate::metrics::Ended;
use crate::outcome::{CompensationFailure, RollbackCause};
use crate::output::Outputs;
use crate::{SagaError, SagaId, SagaKind, SagaOutcome, SagaStatus, StepError};

/// The status of a saga that rolls back: compensating the next step still to compensate (the
/// first member of its group, when it is in one), if there is one.
pub(super) fn pending_status<D: Definition + ?Sized>(
    def: &D,
    state: &SagaState,
) -> Option<SagaStatus<usize>> {
    pending_compensations(def, state)
        .next()
        .map(|(step, _)| SagaStatus::Compensating {
            step: def.stage(step).start,
        })
}

impl<S: SagaKind> Run<S> {
    /// Every step completed.
    pub(super) async fn complete(&mut self) -> Result<Outcome<S>, SagaError> {
        let duration = self.elapsed();
        self.record(
            SagaEventKind::SagaCompleted { duration },
            Change::None,
            Some(SagaStatus::Completed),
        );
        self.flush().await?;
        self.table.metrics().ended(Ended::Completed, duration);
        self.outcome_of_terminal()
    }

    /// A step after the pivot failed for good: the saga ends failed, nothing compensated.
    pub(super) async fn fail(
        &mut self,
        step: usize,
        error: StepError,
    ) -> Result<Outcome<S>, SagaError> {
        self.record(
            SagaEventKind::SagaFailed {
                step: self.table.name_of(step).into(),
                error,
                compensation: false,
            },
            Change::None,
            Some(SagaStatus::Failed { step }),
        );
        self.flush().await?;
        self.table.metrics().ended(Ended::Failed, self.elapsed());
        self.outcome_of_terminal()
    }

    /// Rollback finished.
    pub(super) async fn compensated(&mut self) -> Result<Outcome<S>, SagaError> {
        let duration = self.elapsed();
        self.record(
            SagaEventKind::SagaCompensated { duration },
            Change::None,
            Some(SagaStatus::Compensated),
        );
        self.flush().await?;
        self.table.metrics().ended(Ended::Compensated, duration);
        self.outcome_of_terminal()
    }

    /// A compensation failed for good: the saga ends needing an operator.
    pub(super) async fn compensation_failed(&mut self) -> Result<Outcome<S>, SagaError> {
        let first = self.state.compensation_failures.first().cloned();
        let (step, error) = match first {
            Some(first) => (first.step, first.error),
            None => (0, StepError::permanent("compensation failed")),
        };
        self.record(
            SagaEventKind::SagaFailed {
                step: self.table.name_of(step).into(),
                error,
                compensation: true,
            },
            Change::None,
            Some(SagaStatus::CompensationFailed { step }),
        );
        self.flush().await?;
        self.table
            .metrics()
            .ended(Ended::CompensationFailed, self.elapsed());
        self.outcome_of_terminal()
    }

    /// The outcome of a terminal saga, from its state.
    pub(super) fn outcome_of_terminal(&mut self) -> Result<Outcome<S>, SagaError> {
        // The run ends here: its outputs move to the outcome.
        let outputs = std::mem::take(&mut self.state.outputs);
        outcome::<S>(&self.table, self.id, &self.state, self.take_ctx(), outputs)
    }
}

/// The outcome of saga `id` of type `S`, ended in `state` with context `ctx` and the outputs
/// it recorded.
pub(crate) fn outcome<S: SagaKind>(
    table: &Table<S>,
    id: SagaId,
    state: &SagaState,
    ctx: S::Context,
    outputs: Vec<crate::RecordedOutput>,
) -> Result<Outcome<S>, SagaError> {
    let cause = || -> RollbackCause<S::Step> {
        match state.rollback.as_deref().cloned() {
            Some(RollbackCause::StepFailed { step, error }) => RollbackCause::StepFailed {
                step: step_at::<S>(table, step),
                error,
            },
            Some(RollbackCause::DeadlineExceeded) => RollbackCause::DeadlineExceeded,
            Some(RollbackCause::Cancelled) | None => RollbackCause::Cancelled,
        }
    };
    let outputs = Outputs::new(outputs, table.names);
    Ok(match &state.status {
        SagaStatus::Completed => SagaOutcome::Completed { id, ctx, outputs },
        SagaStatus::Compensated => SagaOutcome::Compensated {
            id,
            cause: cause(),
            ctx,
            outputs,
        },
        SagaStatus::CompensationFailed { .. } => SagaOutcome::CompensationFailed {
            id,
            cause: cause(),
            failures: state
                .compensation_failures
                .iter()
                .map(|f| CompensationFailure {
                    step: step_at::<S>(table, f.step),
                    error: f.error.clone(),
                })
                .collect(),
            uncompensated: state
                .completed
                .iter()
                .rev()
                .filter(|d| !d.compensated && table.compensates(d.step, d.via_fallback))
                .map(|d| step_at::<S>(table, d.step))
                .collect(),
            ctx,
            outputs,
        },
        SagaStatus::Failed { step } => SagaOutcome::Failed {
            id,
            step: step_at::<S>(table, *step),
            error: state
                .failure
                .as_ref()
                .map(|f| f.error.clone())
                .unwrap_or_else(|| StepError::permanent("failed")),
            ctx,
            outputs,
        },
        other => {
            return Err(SagaError::InvalidState {
                id,
                operation: "reading the outcome",
                needed: "completed, compensated, compensation_failed or failed",
                status: other.to_string(),
            })
        }
    })
}
