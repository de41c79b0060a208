//! Typed step outputs: what a step may return besides changing the context, how it is recorded
//! (as JSON, with the step's completion, in the same write), and how it is read back for the
//! step's compensation and the outcome.
//!
//! A step that returns `Result<PaymentProcessed, StepError>` has its `PaymentProcessed` recorded
//! in the saga's state and in the history's `step_completed` event; its compensation may take it
//! as a last parameter, and `outcome.output::<charge_payment>()` reads it back. A step returning
//! `()` records nothing: an absent output reads as JSON `null`, which is what `()` (and `None`)
//! serialize to.

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
    /// Its output, as JSON.
    pub value: serde_json::Value,
}

impl RecordedOutput {
    /// Step `step` returned `value`.
    pub fn new(step: usize, value: serde_json::Value) -> Self {
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
    recorded: Vec<(&'static str, serde_json::Value)>,
}

impl Outputs {
    /// The outputs of `recorded`, named by `name`.
    pub(crate) fn new(recorded: &[RecordedOutput], name: impl Fn(usize) -> &'static str) -> Self {
        Outputs {
            recorded: recorded
                .iter()
                .map(|o| (name(o.step), o.value.clone()))
                .collect(),
        }
    }

    /// The JSON output recorded for the step named `step`, if it completed with one.
    pub fn json(&self, step: &str) -> Option<&serde_json::Value> {
        self.recorded
            .iter()
            .rev()
            .find(|(name, _)| *name == step)
            .map(|(_, value)| value)
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
