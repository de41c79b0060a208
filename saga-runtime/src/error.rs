//! Errors: what a step returns, and what running a saga can fail with.
//!
//! A step fails with a [`StepError`], which is either **transient** (retried while the step has
//! attempts left) or **permanent** (never retried: the step has failed for good, and the saga
//! moves on to the step's fallback or to compensation). A timeout is transient; a panic inside a
//! step is caught and becomes a permanent error of that step.
//!
//! Any `std::error::Error` converts into a transient `StepError` with `?`, since most failures of
//! remote calls are worth another try. Mark the ones that are not with [`StepError::permanent`] or
//! [`ResultExt::permanent`].
//!
//! [`SagaError`] is different: it says that the saga could not be run or looked up at all (an
//! unknown id, a store that failed), not that a step failed. A step failure is a normal
//! [`SagaOutcome`](crate::SagaOutcome).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SagaId;

/// Whether a failed attempt is worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Retried while attempts remain.
    Transient,
    /// Never retried.
    Permanent,
    /// The attempt ran past the step's `timeout`; transient.
    Timeout,
    /// The step panicked; permanent. The message is the panic payload.
    Panic,
}

impl ErrorKind {
    /// `true` when another attempt may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Timeout)
    }
}

/// The error of one step attempt (or compensation attempt).
///
/// Cheap to clone: the source error, if any, is shared.
#[derive(Clone)]
pub struct StepError {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StepError {
    /// A transient error: the step is retried while it has attempts left.
    pub fn transient(message: impl Into<Cow<'static, str>>) -> Self {
        Self::with_kind(ErrorKind::Transient, message)
    }

    /// A permanent error: the step is not retried.
    pub fn permanent(message: impl Into<Cow<'static, str>>) -> Self {
        Self::with_kind(ErrorKind::Permanent, message)
    }

    /// An error of the given kind with a message and no source.
    pub fn with_kind(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        StepError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Wraps an error value as transient, keeping it as the source.
    pub fn from_error<E>(error: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        StepError {
            kind: ErrorKind::Transient,
            message: Cow::Owned(error.to_string()),
            source: Some(Arc::new(error)),
        }
    }

    pub(crate) fn timeout(limit: Duration) -> Self {
        Self::with_kind(ErrorKind::Timeout, format!("timed out after {limit:?}"))
    }

    pub(crate) fn panic(what: &str, payload: &(dyn std::any::Any + Send)) -> Self {
        Self::with_kind(ErrorKind::Panic, format!("{what} {}", panicked(payload)))
    }

    /// Turns this error permanent, keeping message and source.
    pub fn into_permanent(mut self) -> Self {
        self.kind = ErrorKind::Permanent;
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// `true` when another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// `true` when the attempt timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The wrapped error, when the step returned one.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl PartialEq for StepError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

// `StepError` deliberately does not implement `std::error::Error`, like `anyhow::Error`: that is
// what lets every error type convert into it with `?`.
impl<E> From<E> for StepError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        StepError::from_error(error)
    }
}

/// The serialized form of a [`StepError`]: kind and message (the source is not persisted).
#[derive(Serialize, Deserialize)]
struct StepErrorRepr {
    kind: ErrorKind,
    message: String,
}

impl Serialize for StepError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StepErrorRepr {
            kind: self.kind,
            message: self.message.to_string(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StepError {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = StepErrorRepr::deserialize(deserializer)?;
        Ok(StepError::with_kind(repr.kind, repr.message))
    }
}

/// Adds `.permanent()` and `.transient()` to any `Result` whose error converts into a
/// [`StepError`].
///
/// ```
/// use saga_runtime::{ResultExt, StepError};
///
/// fn parse(amount: &str) -> Result<u64, StepError> {
///     // A malformed amount will not parse on the next attempt either.
///     let cents = amount.parse::<u64>().permanent()?;
///     Ok(cents)
/// }
/// assert!(!parse("ten").unwrap_err().is_retryable());
/// ```
pub trait ResultExt<T> {
    /// Maps the error to a permanent [`StepError`].
    fn permanent(self) -> Result<T, StepError>;
    /// Maps the error to a transient [`StepError`].
    fn transient(self) -> Result<T, StepError>;
}

impl<T, E> ResultExt<T> for Result<T, E>
where
    E: Into<StepError>,
{
    fn permanent(self) -> Result<T, StepError> {
        self.map_err(|e| e.into().into_permanent())
    }

    fn transient(self) -> Result<T, StepError> {
        self.map_err(|e| {
            let mut e = e.into();
            e.kind = ErrorKind::Transient;
            e
        })
    }
}

/// Running or looking up a saga failed for a reason other than a step failing.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// No saga with this id is known to the engine's store.
    #[error("no saga with id {0}")]
    NotFound(SagaId),
    /// The saga exists but is of another saga type.
    #[error("saga {id} is a `{actual}`, not a `{expected}`")]
    WrongType {
        /// The saga's id.
        id: SagaId,
        /// The type that was asked for.
        expected: &'static str,
        /// The type the saga was started as.
        actual: String,
    },
    /// An operator request (cancel, resume, retry) cannot be honoured in the saga's state.
    #[error("saga {id}: cannot {request}: {refusal}")]
    Refused {
        /// The saga's id.
        id: SagaId,
        /// What was asked.
        request: crate::OperatorRequest,
        /// Why it cannot be done.
        refusal: crate::Refusal,
    },
    /// The operation needs the saga in another state (e.g. retrying a saga whose compensation
    /// did not fail).
    #[error("saga {id} is {status}; {operation} needs it to be {needed}")]
    InvalidState {
        /// The saga's id.
        id: SagaId,
        /// What was attempted.
        operation: &'static str,
        /// The state it needs.
        needed: &'static str,
        /// The state it is in.
        status: String,
    },
    /// The saga is parked: it cannot go on under this program and waits for an operator (who
    /// may resume it once the cause is fixed), so it has no outcome yet.
    #[error("saga {id} is parked: {reason}")]
    Parked {
        /// The saga's id.
        id: SagaId,
        /// Why it was parked.
        reason: String,
    },
    /// The stored context could not be read back as this saga's context type.
    #[error("saga {id}: stored context is unreadable: {message}")]
    CorruptContext {
        /// The saga's id.
        id: SagaId,
        /// What the decoder said.
        message: String,
    },
    /// The saga's dependencies were not given and its `Deps` type has no default.
    #[error(
        "saga `{saga_type}` needs its dependencies: use `run_with`/`start_with` or `.deps(...)`"
    )]
    MissingDeps {
        /// The saga type.
        saga_type: &'static str,
    },
    /// `run` was asked to run a saga under an id or idempotency key that is already taken; `start`
    /// returns the existing saga's id instead.
    #[error("saga {id} already exists")]
    AlreadyExists {
        /// The existing saga's id.
        id: SagaId,
    },
    /// The stored saga does not fit this program's definition of its type.
    #[error("saga {id} does not fit this definition: {message}")]
    IncompatibleDefinition {
        /// The saga's id.
        id: SagaId,
        /// What does not fit.
        message: String,
    },
    /// The saga store failed.
    #[error("saga store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What a panic said: `"panicked: {message}"`, or `"panicked"` when its payload is not text.
pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}
