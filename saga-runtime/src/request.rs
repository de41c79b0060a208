//! Operator requests: what any process may ask of a saga by its id alone (without the typed saga
//! or its dependencies), and why a request is refused.
//!
//! A request goes through the store, so it reaches a saga wherever it runs:
//!
//! - **cancel**: the saga stops at its next step boundary and compensates, as if a step had
//!   failed. The store marks the saga; the worker holding it learns of it at once when it is this
//!   engine, otherwise at its next lease renewal (every 2 s by default); a saga waiting on a timer
//!   is woken at once.
//! - **resume**: a parked saga goes on from where it stopped (after its cause was fixed: a
//!   missing saga type registered, a definition restored, a crash fixed).
//! - **retry**: a compensation-failed saga continues its compensation with the step whose
//!   compensation failed; a saga that failed after its pivot runs its failed step again.
//!
//! Resume and retry reopen the saga in the store and leave it for any worker that has its type
//! registered (or for the caller: [`SagaClient::retry`](crate::SagaClient::retry)).

use serde::{Deserialize, Serialize};

/// What an operator asks of a saga.
///
/// ```
/// use saga_runtime::OperatorRequest;
///
/// assert_eq!(OperatorRequest::Cancel.to_string(), "cancel");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OperatorRequest {
    /// Stop at the next step boundary and compensate.
    Cancel,
    /// Resume a parked saga from where it stopped.
    Resume,
    /// Retry a compensation-failed saga's compensation, or the failed step of a saga that failed
    /// after its pivot.
    Retry,
}

impl std::fmt::Display for OperatorRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OperatorRequest::Cancel => "cancel",
            OperatorRequest::Resume => "resume",
            OperatorRequest::Retry => "retry",
        })
    }
}

/// Why an operator request was refused (see [`SagaError::Refused`](crate::SagaError::Refused)).
///
/// ```
/// use saga_runtime::Refusal;
///
/// let refusal = Refusal::PastPivot;
/// assert!(refusal.to_string().contains("pivot"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The saga has ended (completed or compensated; for a cancellation, any end).
    #[error("it has ended ({status})")]
    Finished {
        /// Its status name.
        status: String,
    },
    /// The saga has passed its pivot step: it can no longer be rolled back.
    #[error("it has passed its pivot step and can no longer be rolled back")]
    PastPivot,
    /// The saga's pivot step is running: once it completes the saga cannot be rolled back, and
    /// if it fails the saga rolls back anyway.
    #[error("its pivot step is running: the step decides whether the saga rolls back")]
    InsidePivot,
    /// The saga's last step is running: nothing is left to stop.
    #[error("its last step is running: nothing is left to stop")]
    LastStep,
    /// The saga is already rolling back.
    #[error("it is already rolling back")]
    RollingBack,
    /// The saga is parked: resume it first.
    #[error("it is parked ({reason}): resume it first")]
    Parked {
        /// Why it was parked.
        reason: String,
    },
    /// Only a parked saga can be resumed.
    #[error("it is {status}: only a parked saga can be resumed")]
    NotParked {
        /// Its status name.
        status: String,
    },
    /// Only a compensation-failed saga, or one that failed after its pivot, can be retried.
    #[error(
        "it is {status}: only a compensation-failed saga, or one that failed after its pivot, \
         can be retried"
    )]
    NotRetryable {
        /// Its status name.
        status: String,
    },
}
