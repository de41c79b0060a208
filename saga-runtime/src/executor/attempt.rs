//! One step's attempts: a per-attempt timeout, panics caught, retries with backoff, and the
//! committed-context rule (an attempt works on a copy; only a successful attempt's copy is
//! returned).
//!
//! # Order
//!
//! Each attempt: clone the committed context, record the intent ("step started"), run the
//! function under the timeout with panics caught, then record the result. The timeout wraps one
//! attempt, never the whole retry loop; the backoff wait is between attempts.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;

use super::cancel::Stop;
use super::Run;
use crate::event::SagaEventKind;
use crate::failpoint;
use crate::step::{Phase, StepFn};
use crate::{CompensationRetries, Saga, SagaError, SagaStatus, StepCx, StepError};

/// How many attempts a loop may make.
#[derive(Debug, Clone, Copy)]
pub(super) enum Attempts {
    Limited(u32),
    Forever,
}

impl Attempts {
    pub(super) fn retries(retries: u32) -> Self {
        Attempts::Limited(retries.saturating_add(1))
    }

    pub(super) fn compensation(retries: CompensationRetries) -> Self {
        match retries {
            CompensationRetries::Limited(n) => Attempts::retries(n),
            CompensationRetries::Forever => Attempts::Forever,
        }
    }

    fn allows(self, attempt: u32) -> bool {
        match self {
            Attempts::Limited(max) => attempt <= max,
            Attempts::Forever => true,
        }
    }
}

/// What one loop of attempts is about.
pub(super) struct AttemptPlan<C, D> {
    pub(super) name: &'static str,
    pub(super) phase: Phase,
    pub(super) func: StepFn<C, D>,
    pub(super) timeout: Option<Duration>,
    pub(super) backoff: Duration,
    pub(super) attempts: Attempts,
    /// The status recorded with the first attempt's "step started".
    pub(super) status: SagaStatus<usize>,
}

/// How a loop of attempts ended.
pub(super) enum AttemptsEnded<C> {
    /// An attempt succeeded: its context, attempt number and duration.
    Succeeded(C, u32, Duration),
    /// The last attempt failed: its error and attempt number.
    Failed(StepError, u32),
    /// A retry wait was cut short by cancellation or the deadline; holds the last error.
    Stopped(Stop, StepError, u32),
}

/// Runs one attempt: the timeout applies to it alone, and a panic becomes a permanent error.
async fn attempt_once<C, D>(
    func: StepFn<C, D>,
    work: &mut C,
    cx: &StepCx<D>,
    timeout: Option<Duration>,
) -> Result<(), StepError> {
    let guarded = AssertUnwindSafe(func(work, cx)).catch_unwind();
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, guarded).await {
            Ok(result) => result,
            Err(_) => return Err(StepError::timeout(limit)),
        },
        None => guarded.await,
    };
    result.unwrap_or_else(|payload| Err(StepError::panic(&*payload)))
}

impl<S: Saga> Run<S> {
    /// Runs attempts of `plan` from the committed context until one succeeds, the error is
    /// permanent, the attempts are used up, or (between attempts) the saga is stopped.
    pub(super) async fn attempts(
        &mut self,
        plan: &AttemptPlan<S::Context, S::Deps>,
    ) -> Result<AttemptsEnded<S::Context>, SagaError> {
        let mut attempt = 1;
        loop {
            let status = (attempt == 1).then(|| plan.status.clone());
            self.record(
                SagaEventKind::StepStarted {
                    step: plan.name.into(),
                    phase: plan.phase,
                    attempt,
                },
                status,
            );
            // The intent is durable before the step runs (write-ahead).
            failpoint::hit(
                plan.phase
                    .point("before_intent", "before_compensation_intent"),
                plan.name,
            );
            self.flush().await?;
            failpoint::hit(
                plan.phase
                    .point("after_intent", "after_compensation_intent"),
                plan.name,
            );
            let mut work = (*self.committed).clone();
            let cx = StepCx::new(
                self.id,
                S::NAME,
                plan.name,
                attempt,
                plan.phase,
                Arc::clone(&self.deps),
            );
            let started = Instant::now();
            let error = match attempt_once(plan.func, &mut work, &cx, plan.timeout).await {
                Ok(()) => {
                    failpoint::hit(
                        plan.phase
                            .point("after_effect", "after_compensation_effect"),
                        plan.name,
                    );
                    return Ok(AttemptsEnded::Succeeded(work, attempt, started.elapsed()));
                }
                Err(error) => error,
            };
            if !error.is_retryable() || !plan.attempts.allows(attempt + 1) {
                return Ok(AttemptsEnded::Failed(error, attempt));
            }
            let delay = self.engine.inner.backoff.delay(plan.backoff, attempt);
            self.record(
                SagaEventKind::RetryScheduled {
                    step: plan.name.into(),
                    phase: plan.phase,
                    attempt,
                    delay,
                    error: error.clone(),
                },
                None,
            );
            self.flush().await?;
            // Compensations are never cut short: a rollback must finish.
            let stop = match plan.phase {
                Phase::Action => self.cancel.sleep(delay, self.deadline).await,
                Phase::Compensation => {
                    tokio::time::sleep(delay).await;
                    None
                }
            };
            if let Some(stop) = stop {
                return Ok(AttemptsEnded::Stopped(stop, error, attempt));
            }
            attempt += 1;
        }
    }
}
