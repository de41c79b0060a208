//! Events: one per transition, to `tracing` and to subscribers.
//!
//! Every event is also appended to the saga's history in the store, so a saga's timeline can be
//! read back after the fact (`history(id)`).
//!
//! On a failure the order is: step failed, compensation started, step compensated (once per
//! compensated step, latest first), saga compensated.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::step::Phase;
use crate::{RollbackCause, SagaId, StepError};

/// A step's name in an event.
pub type StepName = Cow<'static, str>;

/// One transition of one saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaEvent {
    /// The saga's id.
    pub saga_id: SagaId,
    /// The saga's type name.
    pub saga_type: Cow<'static, str>,
    /// When it happened.
    pub at: SystemTime,
    /// What happened.
    pub kind: SagaEventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SagaEventKind {
    /// The saga was recorded and starts.
    SagaStarted {
        /// Its steps, in order.
        steps: Vec<StepName>,
    },
    /// An attempt of a step's action or compensation starts.
    StepStarted {
        /// The step.
        step: StepName,
        /// Action or compensation.
        phase: Phase,
        /// From 1.
        attempt: u32,
    },
    /// An attempt failed with a retryable error; the next starts after `delay`.
    RetryScheduled {
        /// The step.
        step: StepName,
        /// Action or compensation.
        phase: Phase,
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// The attempt's error.
        error: StepError,
    },
    /// A step's action completed and its context changes were committed (a member of a
    /// parallel group has none: it reads the context only).
    StepCompleted {
        /// The step.
        step: StepName,
        /// The attempt that succeeded.
        attempt: u32,
        /// How long that attempt took.
        duration: Duration,
        /// What the step returned, when it returned something other than `()`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<crate::OutputValue>,
    },
    /// A step's action failed for good.
    StepFailed {
        /// The step.
        step: StepName,
        /// The last attempt.
        attempt: u32,
        /// Its error.
        error: StepError,
    },
    /// A step failed for good and its fallback runs in its place.
    FallbackStarted {
        /// The failed step.
        step: StepName,
        /// The fallback step.
        fallback: StepName,
    },
    /// Rollback starts.
    CompensationStarted {
        /// Why.
        reason: RollbackCause<StepName>,
    },
    /// A step's compensation succeeded.
    StepCompensated {
        /// The step.
        step: StepName,
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// A step's compensation failed for good.
    CompensationFailed {
        /// The step.
        step: StepName,
        /// The last attempt.
        attempt: u32,
        /// Its error.
        error: StepError,
    },
    /// A worker resumed the saga after its previous worker stopped mid-run.
    SagaResumed {
        /// How many times in a row it was resumed without progress (from 1).
        recovery_attempt: u32,
    },
    /// A cancellation, or the passing of the saga's deadline, came too late to stop the saga:
    /// it had passed its pivot, or its last step was already running. The saga goes on;
    /// recorded once per cause.
    StopIgnored {
        /// `true` for a cancellation, `false` for the deadline.
        cancelled: bool,
        /// Why it could not stop.
        reason: String,
    },
    /// The saga cannot go on under this program and needs attention.
    SagaParked {
        /// Why.
        reason: String,
    },
    /// An operator reopened the ended saga: resumed it (parked) or retried it
    /// (compensation-failed, or failed after its pivot). A worker goes on with it.
    SagaReopened {
        /// What the operator asked for.
        request: crate::OperatorRequest,
    },
    /// Every step completed.
    SagaCompleted {
        /// From start to end.
        duration: Duration,
    },
    /// Rollback finished: every completed step with a compensation was compensated.
    SagaCompensated {
        /// From start to end.
        duration: Duration,
    },
    /// The saga ended needing attention: a step after the pivot failed, or a compensation failed.
    SagaFailed {
        /// The step that failed, or whose compensation failed.
        step: StepName,
        /// Its error.
        error: StepError,
        /// `true` when it was a compensation that failed.
        compensation: bool,
    },
}

/// Fan-out of events to subscribers.
#[derive(Debug, Clone)]
pub(crate) struct EventBus {
    sender: broadcast::Sender<SagaEvent>,
    /// Set before the first subscriber is created, never cleared. Until then there is no receiver
    /// and publishing is skipped without asking the channel, whose receiver count sits behind the
    /// lock every sender and subscriber of the engine shares.
    subscribed: Arc<AtomicBool>,
}

impl EventBus {
    pub(crate) fn new(capacity: usize) -> Self {
        EventBus {
            sender: broadcast::channel(capacity).0,
            subscribed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SagaEvent> {
        // Before the receiver exists: whoever does not see the flag yet would not have seen the
        // receiver either.
        self.subscribed.store(true, Ordering::SeqCst);
        self.sender.subscribe()
    }

    pub(crate) fn has_subscribers(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst) && self.sender.receiver_count() > 0
    }

    pub(crate) fn publish(&self, event: SagaEvent) {
        // No subscriber is not an error: events also go to tracing and the history.
        let _ = self.sender.send(event);
    }
}

/// Writes an event to `tracing`, inside the saga's span.
pub(crate) fn trace(kind: &SagaEventKind) {
    use tracing::{info, warn};
    match kind {
        SagaEventKind::SagaStarted { steps } => info!(?steps, "saga started"),
        SagaEventKind::StepStarted {
            step,
            phase,
            attempt,
        } => {
            info!(%step, ?phase, attempt, "step started")
        }
        SagaEventKind::RetryScheduled {
            step,
            phase,
            attempt,
            delay,
            error,
        } => {
            warn!(%step, ?phase, attempt, ?delay, %error, "retry scheduled")
        }
        SagaEventKind::StepCompleted {
            step,
            attempt,
            duration,
            ..
        } => {
            info!(%step, attempt, ?duration, "step completed")
        }
        SagaEventKind::StepFailed {
            step,
            attempt,
            error,
        } => {
            warn!(%step, attempt, %error, "step failed")
        }
        SagaEventKind::FallbackStarted { step, fallback } => {
            info!(%step, %fallback, "fallback started")
        }
        SagaEventKind::CompensationStarted { reason } => {
            warn!(?reason, "compensation started")
        }
        SagaEventKind::StepCompensated { step, attempt } => {
            info!(%step, attempt, "step compensated")
        }
        SagaEventKind::CompensationFailed {
            step,
            attempt,
            error,
        } => {
            warn!(%step, attempt, %error, "compensation failed")
        }
        SagaEventKind::SagaResumed { recovery_attempt } => {
            info!(recovery_attempt, "saga resumed")
        }
        SagaEventKind::StopIgnored { cancelled, reason } => {
            tracing::warn!(cancelled, %reason, "stop ignored")
        }
        SagaEventKind::SagaParked { reason } => tracing::error!(%reason, "saga parked"),
        SagaEventKind::SagaReopened { request } => info!(%request, "saga reopened"),
        SagaEventKind::SagaCompleted { duration } => info!(?duration, "saga completed"),
        SagaEventKind::SagaCompensated { duration } => info!(?duration, "saga compensated"),
        SagaEventKind::SagaFailed {
            step,
            error,
            compensation,
        } => {
            tracing::error!(%step, %error, compensation, "saga failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_are_counted_while_they_live() {
        let bus = EventBus::new(4);
        assert!(!bus.has_subscribers());
        let rx = bus.subscribe();
        assert!(bus.has_subscribers());
        drop(rx);
        assert!(!bus.has_subscribers());
        let _rx = bus.clone().subscribe();
        assert!(bus.has_subscribers(), "clones share the subscribers");
    }
}
