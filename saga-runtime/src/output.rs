//! Typed step outputs: what a step may return besides changing the context, how it is recorded
//! (as JSON, with the step's completion, in the same write), and how it is read back for the
//! step's compensation and the outcome.
//!
//! A step that returns `Result<PaymentProcessed, StepError>` has its `PaymentProcessed` recorded
//! in the saga's state and in the history's `step_completed` event; its compensation may take it
//! as a last parameter, and `outcome.output::<charge_payment>()` reads it back. A step returning
//! `()` records nothing: an absent output reads as JSON `null`, which is what `()` (and `None`)
//! serialize to.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::StepError;

/// What a step may return: anything serde can record and read back.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct PaymentProcessed { payment_id: String, amount_cents: u64 }
///
/// fn recordable<T: saga_runtime::StepValue>() {}
/// recordable::<PaymentProcessed>();
/// recordable::<()>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a saga step's output",
    label = "a step's output is recorded in the store",
    note = "derive `serde::Serialize` and `serde::Deserialize` on it"
)]
pub trait StepValue: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> StepValue for T {}

/// The output of one completed step, as a saga's state keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecordedOutput {
    /// The step's position.
    pub step: usize,
    /// Its output, as JSON (shared with the event that recorded it).
    pub value: Arc<serde_json::Value>,
}

impl RecordedOutput {
    /// Step `step` returned `value`.
    pub fn new(step: usize, value: Arc<serde_json::Value>) -> Self {
        RecordedOutput { step, value }
    }
}

/// A step's output as it is recorded: `None` for `null` (a step returning `()`), so that most
/// steps record nothing. An output serde cannot write is the step's permanent failure.
pub(crate) fn record<T: Serialize>(output: T) -> Result<Option<serde_json::Value>, StepError> {
    match serde_json::to_value(output) {
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(e) => Err(StepError::permanent(format!(
            "its output cannot be recorded: {e}"
        ))),
    }
}

/// Reads a recorded output as `T` (an absent one as `null`).
pub(crate) fn read<T: DeserializeOwned>(
    recorded: Option<&serde_json::Value>,
) -> Result<T, serde_json::Error> {
    match recorded {
        Some(value) => T::deserialize(value),
        None => T::deserialize(serde_json::Value::Null),
    }
}

/// The outputs of a saga's steps, in an outcome: read them back typed with
/// [`SagaOutcome::output`](crate::SagaOutcome::output).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outputs {
    /// Each step's name and output, in completion order.
    recorded: Vec<(&'static str, Arc<serde_json::Value>)>,
}

impl Outputs {
    /// The outputs of `recorded`, named by `name`.
    pub(crate) fn new(recorded: &[RecordedOutput], name: impl Fn(usize) -> &'static str) -> Self {
        Outputs {
            recorded: recorded
                .iter()
                .map(|o| (name(o.step), Arc::clone(&o.value)))
                .collect(),
        }
    }

    /// The JSON output recorded for the step named `step`, if it completed with one.
    pub fn json(&self, step: &str) -> Option<&serde_json::Value> {
        self.recorded
            .iter()
            .rev()
            .find(|(name, _)| *name == step)
            .map(|(_, value)| &**value)
    }

    /// Whether the step named `step` recorded anything (a step returning `()` never does).
    pub fn contains(&self, step: &str) -> bool {
        self.json(step).is_some()
    }
}

/// A step of some saga, known by its name and output type: what `#[saga_step]` implements
/// besides [`SagaStep`](crate::SagaStep), for looking its output up.
pub trait NamedStep: 'static {
    /// The step's name.
    const NAME: &'static str;
    /// What it returns on success.
    type Output;
}

/// An output that could not be read back as its step's type (the step's output type changed
/// since the saga recorded it, say).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the output recorded for step `{step}` cannot be read: {message}")]
pub struct OutputError {
    /// The step.
    pub step: &'static str,
    /// Why.
    pub message: String,
}

impl Outputs {
    /// The output of step `S`, read back as its type: `None` when the step did not complete (or
    /// completed with nothing to record, such as `()`).
    pub fn get<S: NamedStep>(&self) -> Result<Option<S::Output>, OutputError>
    where
        S::Output: DeserializeOwned,
    {
        match self.json(S::NAME) {
            None => Ok(None),
            Some(value) => S::Output::deserialize(value)
                .map(Some)
                .map_err(|e| OutputError {
                    step: S::NAME,
                    message: e.to_string(),
                }),
        }
    }
}

/// The output of an earlier step `S`, taken by a later step as a parameter:
///
/// ```
/// # use saga_runtime::{saga, saga_step, Engine, Output, StepError};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// # struct Ctx { sent_for: Option<String> }
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Charged { payment_id: String }
///
/// #[saga_step(pivot)]
/// async fn charge(ctx: &mut Ctx) -> Result<Charged, StepError> {
///     Ok(Charged { payment_id: "pay-1".into() })
/// }
///
/// #[saga_step]
/// async fn send_receipt(ctx: &mut Ctx, charged: Output<charge>) -> Result<(), StepError> {
///     ctx.sent_for = Some(charged.payment_id.clone());
///     Ok(())
/// }
///
/// saga! { Order(Ctx, ()) { charge, send_receipt } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let outcome = Order::on(&Engine::in_memory()).run(Ctx::default()).await.unwrap();
/// assert_eq!(outcome.ctx().sent_for.as_deref(), Some("pay-1"));
/// # }
/// ```
///
/// A step's parameters are the context, the step handle if it takes one, then any number of
/// outputs. Taking the output of a step that does not run before this one (itself, a later
/// step, a member of its own parallel group, a step of another saga) is a compile error.
pub struct Output<S: NamedStep>(pub S::Output);

impl<S: NamedStep> Output<S> {
    /// The output itself.
    pub fn into_inner(self) -> S::Output {
        self.0
    }
}

impl<S: NamedStep> std::ops::Deref for Output<S> {
    type Target = S::Output;

    fn deref(&self) -> &S::Output {
        &self.0
    }
}

impl<S: NamedStep> std::ops::DerefMut for Output<S> {
    fn deref_mut(&mut self) -> &mut S::Output {
        &mut self.0
    }
}

impl<S: NamedStep> std::fmt::Debug for Output<S>
where
    S::Output: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Output").field(&self.0).finish()
    }
}
