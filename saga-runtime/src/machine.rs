//! The saga state machine as data.
//!
//! A saga's [`SagaState`] is what its store keeps: the fold of every [`Write`] recorded for it
//! ([`SagaState::apply`], the one place where a write changes a state; every store and the
//! executor use it). What the saga does next is a pure function of its definition, that state and
//! the time ([`decide`]): run an attempt of a step or compensation, wait until a time, move on
//! (fall back, roll back) or finish. The executor is a loop around it: decide, record the intent,
//! perform, record the result. A live run and a run resumed after a crash go through the same
//! function, so they cannot disagree about what comes next.
//!
//! The state holds a list of activities rather than one cursor, so that more than one step can be
//! in flight, and a wake time per activity, so that a saga can wait without a task.

mod admit;
mod decide;
mod definition;
mod state;

pub use admit::{Admission, Requested};
pub(crate) use decide::{
    decide, past_pivot, pending_compensations, retries_after, Decision, Stop, Task,
};
pub use definition::StepTable;
pub(crate) use definition::{stage_of, Definition, Metrics};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use state::to_millis;
pub use state::{
    Activity, Change, CompensationFailed, CompletedStep, Failure, RetryScheduled, SagaState,
    StepFailed, Write,
};
