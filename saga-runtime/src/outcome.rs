//! What `run` returns: how a saga ended.

use std::fmt;

use crate::output::{NamedStep, OutputError, Outputs};
use crate::{SagaId, StepError};

/// Why a saga rolled back. `S` is the generated step enum in an outcome, a step's name
/// ([`StepName`](crate::StepName)) in an event, its position in a stored state.
///
/// ```
/// use saga_runtime::{RollbackCause, StepError, StepName};
///
/// let cause: RollbackCause<usize> = RollbackCause::StepFailed { step: 1, error: StepError::permanent("no") };
/// let named: RollbackCause<StepName> = cause.map(|step| ["reserve", "charge"][step].into());
/// assert_eq!(named.to_string(), "step `charge` failed: no");
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RollbackCause<S> {
    /// A step failed for good; `error` is its last error, never replaced by later errors.
    StepFailed {
        /// The step that failed.
        step: S,
        /// Its error.
        error: StepError,
    },
    /// The saga was cancelled.
    Cancelled,
    /// The saga's deadline passed.
    DeadlineExceeded,
}

impl<S> RollbackCause<S> {
    /// The same cause, with its step mapped.
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> RollbackCause<T> {
        match self {
            RollbackCause::StepFailed { step, error } => RollbackCause::StepFailed {
                step: f(step),
                error,
            },
            RollbackCause::Cancelled => RollbackCause::Cancelled,
            RollbackCause::DeadlineExceeded => RollbackCause::DeadlineExceeded,
        }
    }
}

/// What a stored cause looks like: tagged `cause`, or `reason` (how events recorded it before
/// events and outcomes shared this type), so that histories written before still read.
#[derive(serde::Deserialize)]
struct StoredCause<S> {
    #[serde(alias = "reason")]
    cause: CauseKind,
    step: Option<S>,
    error: Option<StepError>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum CauseKind {
    StepFailed,
    Cancelled,
    DeadlineExceeded,
}

impl<'de, S: serde::Deserialize<'de>> serde::Deserialize<'de> for RollbackCause<S> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredCause::<S>::deserialize(deserializer)?;
        Ok(match stored.cause {
            CauseKind::StepFailed => RollbackCause::StepFailed {
                step: stored
                    .step
                    .ok_or_else(|| serde::de::Error::missing_field("step"))?,
                error: stored
                    .error
                    .ok_or_else(|| serde::de::Error::missing_field("error"))?,
            },
            CauseKind::Cancelled => RollbackCause::Cancelled,
            CauseKind::DeadlineExceeded => RollbackCause::DeadlineExceeded,
        })
    }
}

impl<S: fmt::Display> fmt::Display for RollbackCause<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RollbackCause::StepFailed { step, error } => write!(f, "step `{step}` failed: {error}"),
            RollbackCause::Cancelled => f.write_str("cancelled"),
            RollbackCause::DeadlineExceeded => f.write_str("deadline exceeded"),
        }
    }
}

/// A compensation that failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct CompensationFailure<S> {
    /// The step whose compensation failed.
    pub step: S,
    /// The compensation's last error.
    pub error: StepError,
}

/// How a saga ended. Every variant carries the saga's id and its last committed context.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a saga may end compensated or failed: look at the outcome"]
#[non_exhaustive]
pub enum SagaOutcome<C, S> {
    /// Every step completed.
    Completed {
        /// The saga's id.
        id: SagaId,
        /// The final context.
        ctx: C,
        /// What its steps returned.
        outputs: Outputs,
    },
    /// The saga rolled back: every completed step that has a compensation was compensated.
    Compensated {
        /// The saga's id.
        id: SagaId,
        /// Why it rolled back.
        cause: RollbackCause<S>,
        /// The context after the compensations.
        ctx: C,
        /// What its completed steps returned.
        outputs: Outputs,
    },
    /// A compensation failed for good. The saga needs an operator, who can retry it.
    CompensationFailed {
        /// The saga's id.
        id: SagaId,
        /// Why it rolled back in the first place.
        cause: RollbackCause<S>,
        /// The compensations that failed: one, or under best-effort rollback, every one.
        failures: Vec<CompensationFailure<S>>,
        /// Completed steps whose compensation has not succeeded, latest first.
        uncompensated: Vec<S>,
        /// The last committed context.
        ctx: C,
        /// What its completed steps returned.
        outputs: Outputs,
    },
    /// A step after the pivot failed for good; nothing was compensated. Needs attention.
    Failed {
        /// The saga's id.
        id: SagaId,
        /// The step that failed.
        step: S,
        /// Its error.
        error: StepError,
        /// The last committed context.
        ctx: C,
        /// What its completed steps returned.
        outputs: Outputs,
    },
}

impl<C, S> SagaOutcome<C, S> {
    /// The saga's id.
    pub fn id(&self) -> SagaId {
        match self {
            SagaOutcome::Completed { id, .. }
            | SagaOutcome::Compensated { id, .. }
            | SagaOutcome::CompensationFailed { id, .. }
            | SagaOutcome::Failed { id, .. } => *id,
        }
    }

    /// The last committed context.
    pub fn ctx(&self) -> &C {
        match self {
            SagaOutcome::Completed { ctx, .. }
            | SagaOutcome::Compensated { ctx, .. }
            | SagaOutcome::CompensationFailed { ctx, .. }
            | SagaOutcome::Failed { ctx, .. } => ctx,
        }
    }

    /// Takes the last committed context.
    pub fn into_ctx(self) -> C {
        match self {
            SagaOutcome::Completed { ctx, .. }
            | SagaOutcome::Compensated { ctx, .. }
            | SagaOutcome::CompensationFailed { ctx, .. }
            | SagaOutcome::Failed { ctx, .. } => ctx,
        }
    }

    /// What its completed steps returned, by step name.
    pub fn outputs(&self) -> &Outputs {
        match self {
            SagaOutcome::Completed { outputs, .. }
            | SagaOutcome::Compensated { outputs, .. }
            | SagaOutcome::CompensationFailed { outputs, .. }
            | SagaOutcome::Failed { outputs, .. } => outputs,
        }
    }

    /// What step `St` returned, read back as its type: `None` when it did not complete (or
    /// returned `()`), an error when the recorded value no longer reads as its type.
    ///
    /// ```
    /// # use saga_runtime::{saga, saga_step, Engine, StepError};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// # struct Ctx;
    /// #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    /// struct Charged { payment_id: String }
    ///
    /// #[saga_step]
    /// async fn charge(ctx: &mut Ctx) -> Result<Charged, StepError> {
    ///     Ok(Charged { payment_id: "pay-1".into() })
    /// }
    /// saga! { Order(Ctx, ()) { charge } }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let outcome = Order::on(&Engine::in_memory()).run(Ctx).await.unwrap();
    /// assert_eq!(outcome.output::<charge>().unwrap(), Some(Charged { payment_id: "pay-1".into() }));
    /// # }
    /// ```
    pub fn output<St: NamedStep>(&self) -> Result<Option<St::Output>, OutputError>
    where
        St::Output: crate::StepValue,
    {
        self.outputs().get::<St>()
    }

    /// `true` when every step completed.
    pub fn is_completed(&self) -> bool {
        matches!(self, SagaOutcome::Completed { .. })
    }

    /// The rollback cause, for compensated and compensation-failed outcomes.
    pub fn cause(&self) -> Option<&RollbackCause<S>> {
        match self {
            SagaOutcome::Compensated { cause, .. }
            | SagaOutcome::CompensationFailed { cause, .. } => Some(cause),
            _ => None,
        }
    }
}
