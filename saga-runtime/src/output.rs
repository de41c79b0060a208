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

/// What a step may return: anything serde can record and read back.
///
/// ```
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct PaymentProcessed { payment_id: String, amount_cents: u64 }
///
/// fn recordable<T: saga_runtime::StepValue>() {}
/// recordable::<PaymentProcessed>();
/// recordable::<()>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a saga step's output",
    label = "a step's output is recorded in the store",
    note = "derive `Clone, serde::Serialize, serde::Deserialize` on it"
)]
pub trait StepValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> StepValue for T {}

/// A step's output: the value the step returned, kept as it is while the saga runs in this
/// process (a later step or the compensation that takes it gets a clone, as a context is cloned),
/// or its JSON, once read back from a store. It serializes as that JSON, which is what a durable
/// store records, the history shows and [`OutputValue::json`] gives; the JSON of a value is
/// written once, the first time it is needed.
#[derive(Clone)]
pub struct OutputValue(Repr);

#[derive(Clone)]
enum Repr {
    Typed(Arc<dyn Typed>),
    Json(Arc<serde_json::Value>),
}

/// A step's output value of some type, with its JSON once written.
struct Held<T> {
    value: T,
    json: std::sync::OnceLock<Result<serde_json::Value, String>>,
}

/// [`Held`] of any type, as [`OutputValue`] holds it.
trait Typed: Send + Sync + 'static {
    fn as_any(&self) -> &dyn std::any::Any;
    fn to_json(&self) -> Result<&serde_json::Value, &str>;
}

impl<T: StepValue> Typed for Held<T> {
    fn as_any(&self) -> &dyn std::any::Any {
        &self.value
    }

    fn to_json(&self) -> Result<&serde_json::Value, &str> {
        self.json
            .get_or_init(|| serde_json::to_value(&self.value).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// A command on its way to a participant service: never recorded, sent by the attempt that
/// built it.
pub(crate) struct Outbound {
    /// Where it goes.
    pub(crate) target: crate::step::RemoteTarget,
    /// The command, as JSON.
    pub(crate) command: serde_json::Value,
}

impl Typed for Outbound {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn to_json(&self) -> Result<&serde_json::Value, &str> {
        Ok(&self.command)
    }
}

impl OutputValue {
    /// An output as JSON.
    pub fn from_json(value: serde_json::Value) -> Self {
        OutputValue(Repr::Json(Arc::new(value)))
    }

    /// The output as JSON; `null` for a value serde cannot write (which only an in-memory
    /// engine lets through: a durable one fails the step, see [`StepValue`]).
    pub fn json(&self) -> &serde_json::Value {
        match &self.0 {
            Repr::Typed(value) => value.to_json().unwrap_or(&serde_json::Value::Null),
            Repr::Json(value) => value,
        }
    }

    /// Writes the value's JSON now, or says why it cannot be written.
    pub(crate) fn check(&self) -> Result<(), String> {
        match &self.0 {
            Repr::Typed(value) => value.to_json().map(drop).map_err(str::to_owned),
            Repr::Json(_) => Ok(()),
        }
    }

    /// A command for a participant service, as a remote step's function (or a compensation
    /// that returns one) hands it to the executor to send.
    pub(crate) fn outbound(target: crate::step::RemoteTarget, command: serde_json::Value) -> Self {
        OutputValue(Repr::Typed(Arc::new(Outbound { target, command })))
    }

    /// The command this value holds for a participant service, if it is one.
    pub(crate) fn as_outbound(&self) -> Option<&Outbound> {
        match &self.0 {
            Repr::Typed(value) => value.as_any().downcast_ref::<Outbound>(),
            Repr::Json(_) => None,
        }
    }

    /// The output as a `T`: a clone of the value when it is one, else read from its JSON.
    pub(crate) fn read<T: StepValue>(&self) -> Result<T, serde_json::Error> {
        match &self.0 {
            Repr::Typed(value) => match value.as_any().downcast_ref::<T>() {
                Some(value) => Ok(value.clone()),
                None => T::deserialize(self.json()),
            },
            Repr::Json(value) => T::deserialize(&**value),
        }
    }
}

impl Serialize for OutputValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Typed(value) => match value.to_json() {
                Ok(json) => json.serialize(serializer),
                Err(e) => Err(serde::ser::Error::custom(e)),
            },
            Repr::Json(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for OutputValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(OutputValue::from_json)
    }
}

impl PartialEq for OutputValue {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl std::fmt::Debug for OutputValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.json(), f)
    }
}

/// The output of one completed step, as a saga's state keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecordedOutput {
    /// The step's position.
    pub step: usize,
    /// Its output (shared with the event that recorded it).
    pub value: OutputValue,
}

impl RecordedOutput {
    /// Step `step` returned `value`.
    pub fn new(step: usize, value: OutputValue) -> Self {
        RecordedOutput { step, value }
    }
}

/// A step's output as it is recorded: `None` for one that serializes as `null` (a step
/// returning `()`), so that most steps record nothing. The value is kept as it is: an engine on
/// a durable store writes its JSON when the step completes (an output serde cannot write is
/// then the step's permanent failure), an in-memory one only when someone asks for it.
pub(crate) fn record<T: StepValue>(output: T) -> Option<OutputValue> {
    if output.serialize(IsNull).is_ok() {
        return None;
    }
    let held = Held {
        value: output,
        json: std::sync::OnceLock::new(),
    };
    Some(OutputValue(Repr::Typed(Arc::new(held))))
}

/// A serializer that only finds out whether a value serializes as JSON `null` (`()`, `None`, a
/// unit struct, or a newtype around one), stopping at the first thing that is not.
struct IsNull;

/// What [`IsNull`] says of a value that is not `null`.
#[derive(Debug)]
struct NotNull;

impl std::fmt::Display for NotNull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not null")
    }
}

impl std::error::Error for NotNull {}

impl serde::ser::Error for NotNull {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotNull
    }
}

/// `fn $name(self, _: $ty) -> Result<(), NotNull>`, each saying "not null".
macro_rules! not_null {
    ($($name:ident($($ty:ty),*);)*) => {$(
        fn $name(self $(, _: $ty)*) -> Result<(), NotNull> {
            Err(NotNull)
        }
    )*};
}

impl serde::Serializer for IsNull {
    type Ok = ();
    type Error = NotNull;
    type SerializeSeq = serde::ser::Impossible<(), NotNull>;
    type SerializeTuple = serde::ser::Impossible<(), NotNull>;
    type SerializeTupleStruct = serde::ser::Impossible<(), NotNull>;
    type SerializeTupleVariant = serde::ser::Impossible<(), NotNull>;
    type SerializeMap = serde::ser::Impossible<(), NotNull>;
    type SerializeStruct = serde::ser::Impossible<(), NotNull>;
    type SerializeStructVariant = serde::ser::Impossible<(), NotNull>;

    fn serialize_unit(self) -> Result<(), NotNull> {
        Ok(())
    }

    fn serialize_none(self) -> Result<(), NotNull> {
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), NotNull> {
        Ok(())
    }

    fn serialize_some<V: ?Sized + Serialize>(self, value: &V) -> Result<(), NotNull> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<V: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &V,
    ) -> Result<(), NotNull> {
        value.serialize(self)
    }

    not_null! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_newtype_variant<V: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), NotNull> {
        Err(NotNull)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotNull> {
        Err(NotNull)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotNull> {
        Err(NotNull)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotNull> {
        Err(NotNull)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotNull> {
        Err(NotNull)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotNull> {
        Err(NotNull)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotNull> {
        Err(NotNull)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotNull> {
        Err(NotNull)
    }
}

/// Reads a recorded output as `T` (an absent one as `null`).
pub(crate) fn read<T: StepValue>(recorded: Option<&OutputValue>) -> Result<T, serde_json::Error> {
    match recorded {
        Some(value) => value.read(),
        None => T::deserialize(serde_json::Value::Null),
    }
}

/// The outputs of a saga's steps, in an outcome: read them back typed with
/// [`SagaOutcome::output`](crate::SagaOutcome::output).
#[derive(Clone)]
pub struct Outputs {
    /// Each step's output, in completion order.
    recorded: Vec<RecordedOutput>,
    /// The names of the steps.
    names: StepNames,
}

/// The names of a definition's steps, by position: a function `saga!` generates, or the list of
/// a built definition.
#[derive(Clone, Copy)]
pub(crate) enum StepNames {
    Generated(fn(usize) -> &'static str),
    Listed(&'static [&'static str]),
}

impl StepNames {
    /// The name of the step at `step`.
    pub(crate) fn of(self, step: usize) -> &'static str {
        match self {
            StepNames::Generated(name) => name(step),
            StepNames::Listed(names) => names.get(step).copied().unwrap_or("?"),
        }
    }
}

impl Outputs {
    /// The outputs `recorded`, their steps named by `names`.
    pub(crate) fn new(recorded: Vec<RecordedOutput>, names: StepNames) -> Self {
        Outputs { recorded, names }
    }

    /// Each step's name and output, in completion order.
    fn named(&self) -> impl DoubleEndedIterator<Item = (&'static str, &OutputValue)> + '_ {
        self.recorded
            .iter()
            .map(|o| (self.names.of(o.step), &o.value))
    }

    /// The output recorded for the step named `step`, if it completed with one.
    fn value(&self, step: &str) -> Option<&OutputValue> {
        self.named()
            .rev()
            .find(|(name, _)| *name == step)
            .map(|(_, value)| value)
    }

    /// The JSON output recorded for the step named `step`, if it completed with one.
    pub fn json(&self, step: &str) -> Option<&serde_json::Value> {
        self.value(step).map(OutputValue::json)
    }

    /// Whether the step named `step` recorded anything (a step returning `()` never does).
    pub fn contains(&self, step: &str) -> bool {
        self.value(step).is_some()
    }
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs::new(Vec::new(), StepNames::Listed(&[]))
    }
}

impl PartialEq for Outputs {
    fn eq(&self, other: &Self) -> bool {
        self.named().eq(other.named())
    }
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.named()).finish()
    }
}

/// Whether `name` is step `step`'s: its own name, or an instance of it (`"{step}[{i}]"`).
pub(crate) fn names_step(name: &str, step: &str) -> bool {
    match name.strip_prefix(step) {
        Some("") => true,
        Some(rest) => rest.starts_with('[') && rest.ends_with(']'),
        None => false,
    }
}

/// A step of some saga, known by its name and output type: what `#[saga_step]` implements
/// besides `SagaStep`, for looking its output up.
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
        S::Output: StepValue,
    {
        match self.value(S::NAME) {
            None => Ok(None),
            Some(value) => value.read().map(Some).map_err(|e| OutputError {
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
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
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
