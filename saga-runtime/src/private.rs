//! What expansions of `saga!` and `#[saga_step]` need. Not public API: it may change in any
//! release; `saga-macros` is pinned to an exact version of this crate for that reason.

pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{self, Err, Ok};
pub use std::boxed::Box;
pub use std::sync::Arc;
pub use std::sync::OnceLock;
pub use std::time::Duration;

use std::future::Future;

use crate::StepError;

#[path = "private/listed.rs"]
mod listed;
pub use listed::{assert_listed, not_steps, Declared, Listed, NotAStep, NothingThere, Unresolved};

pub use crate::bus::{Bus, BusError};
pub use crate::choreography::{
    emits_alone, is_emitted, is_taken, is_unique, is_whole, start as choreography_start,
    status as choreography_status, takes_alone, Choreography, Event, FlowService, Handler,
    HandlerCx, HandlerFuture, HandlerInfo, HandlerPolicy,
};
pub use crate::client::SagaClient;
pub use crate::machine::StepTable;
pub use crate::metrics::SagaMetrics;
pub use crate::output::NamedStep;
pub use crate::remote::Command;
pub use crate::remote::{CommandHandler, ParticipantCx};
pub use crate::saga::{Saga, SagaContext, SagaOptions, StepEnum};
pub use crate::step::{
    CompensationRetries, RemoteTarget, SagaStep, StepCx, StepDef, StepDescription, StepFuture,
    StepPolicy, Undo,
};

/// Finds the default dependencies of a saga whose dependencies type is `Default`, from the
/// concrete type `saga!` names: `(&DepsProbe::<D>::new()).default_deps()` is `Some` when `D:
/// Default` (through [`DepsDefault`], found first) and `None` otherwise (through
/// [`DepsNoDefault`]). Generic code cannot ask whether a type is `Default`; an expansion, which
/// names the type, can.
pub struct DepsProbe<D>(std::marker::PhantomData<fn() -> D>);

impl<D> DepsProbe<D> {
    /// A probe for `D`.
    pub const fn new() -> Self {
        DepsProbe(std::marker::PhantomData)
    }
}

impl<D> Default for DepsProbe<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D> Clone for DepsProbe<D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for DepsProbe<D> {}

/// [`DepsProbe`] of a `Default` type.
pub trait DepsDefault<D> {
    /// `Some(D::default())`.
    fn default_deps(self) -> Option<std::sync::Arc<D>>;
}

impl<D: Default> DepsDefault<D> for &DepsProbe<D> {
    fn default_deps(self) -> Option<std::sync::Arc<D>> {
        Some(std::sync::Arc::new(D::default()))
    }
}

/// [`DepsProbe`] of any other type.
pub trait DepsNoDefault<D> {
    /// `None`.
    fn default_deps(self) -> Option<std::sync::Arc<D>>;
}

impl<D> DepsNoDefault<D> for DepsProbe<D> {
    fn default_deps(self) -> Option<std::sync::Arc<D>> {
        None
    }
}

/// Implemented by `#[saga_step]` for steps that declare what rollback does with them
/// (`compensate`, `pivot` or `nothing_to_undo`). `saga!` requires it of every step but the last.
#[diagnostic::on_unimplemented(
    message = "step `{Self}` says nothing about compensation",
    label = "this step is not the last, so a later failure may need to undo it",
    note = "add `compensate = <fn>`, `pivot` or `nothing_to_undo` to its `#[saga_step(...)]`"
)]
pub trait DeclaresUndo {}

/// Fails to compile, at the step's name in `saga!`, for a non-final step that says nothing about
/// compensation.
pub const fn assert_declares_undo<T: DeclaresUndo>() {}

/// Implemented by `#[saga_step]` for a step that takes the context by shared reference (`&Ctx`)
/// (its fallback must too): what a member of a parallel group must be.
#[diagnostic::on_unimplemented(
    message = "step `{Self}` may change the context, so it cannot run in a parallel group",
    label = "a member of a parallel group takes the context by `&Ctx`, not `&mut Ctx`",
    note = "the members of a group run at once: each reads the context and returns what it produces as its output (`Result<T, StepError>`), which later steps take as `Output<step>`; its compensation and fallback take `&Ctx` too"
)]
pub trait ReadsContextOnly {}

/// Fails to compile, at the step's name in `saga!`, for a member of a parallel group that takes
/// the context by `&mut`.
pub const fn assert_reads_context_only<T: ReadsContextOnly>() {}

/// Implemented by `#[saga_step]` for a step that is not a `pivot`.
#[diagnostic::on_unimplemented(
    message = "step `{Self}` is a `pivot`, so it cannot run in a parallel group",
    label = "a pivot is the saga's point of no return: it runs alone",
    note = "move the pivot step out of `parallel(...)`, before or after the group"
)]
pub trait NotPivot {}

/// Fails to compile, at the step's name in `saga!`, for a member of a parallel group that is a
/// pivot.
pub const fn assert_not_pivot<T: NotPivot>() {}

/// Fails to compile, at the handle type, when a step's second parameter is not `&StepCx<Deps>`
/// (or an alias of it).
pub const fn assert_step_handle<H: StepHandle + ?Sized>() {}

/// The dependencies type of a step handle parameter: `&StepCx<D>` gives `D`.
#[diagnostic::on_unimplemented(
    message = "the second parameter of a saga step must be the step handle `&StepCx<Deps>`",
    label = "expected `StepCx<...>`, found `{Self}`"
)]
pub trait StepHandle {
    /// `D` of `StepCx<D>`.
    type Deps: Send + Sync + 'static;

    /// The handle itself: the identity, seen through an alias of `StepCx<D>`.
    fn from_cx(cx: &StepCx<Self::Deps>) -> &Self;
}

impl<D: Send + Sync + 'static> StepHandle for StepCx<D> {
    type Deps = D;

    fn from_cx(cx: &StepCx<D>) -> &Self {
        cx
    }
}

/// What a step's action returns: `Result<T, StepError>` for a `T` serde can record. The bound
/// sits on the step's declared return type, so a wrong one is reported there.
#[diagnostic::on_unimplemented(
    message = "a saga step must return `Result<T, StepError>`, not `{Self}`",
    label = "expected `Result<T, StepError>`, `T` being `()` or the step's serde-serializable output"
)]
pub trait StepOutput: Sized {
    /// Boxes a future of this output, recording its value on success.
    fn boxed<'a, F: Future<Output = Self> + Send + 'a>(future: F) -> StepFuture<'a>;
}

impl<T: crate::StepValue> StepOutput for Result<T, StepError> {
    fn boxed<'a, F: Future<Output = Self> + Send + 'a>(future: F) -> StepFuture<'a> {
        Box::pin(futures_util::FutureExt::map(future, recorded::<T>))
    }
}

/// The `T` of a step's `Result<T, E>`, whatever `E` (which [`StepOutput`] checks).
#[diagnostic::on_unimplemented(
    message = "a saga step must return `Result<T, StepError>`, not `{Self}`",
    label = "expected `Result<T, StepError>`"
)]
pub trait StepResult {
    /// `T`.
    type Value;
}

impl<T, E> StepResult for Result<T, E> {
    type Value = T;
}

/// A step's result with its output recorded.
fn recorded<T: crate::StepValue>(
    result: Result<T, StepError>,
) -> Result<Option<crate::OutputValue>, StepError> {
    result.map(crate::output::record)
}

/// A compensation's result: it records nothing, or it is a command a participant service
/// carries out (the compensation of a step done elsewhere).
fn undone<U: Undone>(
    result: Result<U, StepError>,
) -> Result<Option<crate::OutputValue>, StepError> {
    result.and_then(Undone::undone)
}

/// What a compensation returns on success: `()` when it undid the step itself, or a
/// [`Command`](crate::remote::Command) that a participant service carries out.
#[diagnostic::on_unimplemented(
    message = "a compensation returns `Result<(), StepError>`, or `Result<C, StepError>` with `C` a command, not `Result<{Self}, StepError>`",
    label = "return `()`, or a command that implements `saga_runtime::remote::Command`"
)]
pub trait Undone {
    /// The compensation's success, as the executor takes it.
    fn undone(self) -> Result<Option<crate::OutputValue>, StepError>;
}

impl Undone for () {
    fn undone(self) -> Result<Option<crate::OutputValue>, StepError> {
        Ok(None)
    }
}

impl<C: crate::remote::Command> Undone for C {
    fn undone(self) -> Result<Option<crate::OutputValue>, StepError> {
        outbound(self).map(Some)
    }
}

/// Command `command`, to be sent to its service.
fn outbound<C: crate::remote::Command>(command: C) -> Result<crate::OutputValue, StepError> {
    let target = RemoteTarget {
        service: C::SERVICE,
        action: C::ACTION,
    };
    serde_json::to_value(command)
        .map(|json| crate::OutputValue::outbound(target, json))
        .map_err(|e| StepError::permanent(format!("the command cannot be written as JSON: {e}")))
}

/// One attempt of a step's action, boxed, recording its output on success. `O` is the step's
/// declared return type, so that a wrong one fails at it; `F` is inferred, at the step's name, so
/// that a future that is not `Send` fails there.
pub fn action<'a, O: StepOutput, F: Future<Output = O> + Send + 'a>(future: F) -> StepFuture<'a> {
    O::boxed(future)
}

/// One attempt of a remote step's function, which builds the command: boxed, the command
/// recorded as JSON for the executor to send (see [`crate::remote`]). `O` is the declared return
/// type, `Result<C, StepError>` with `C` a [`Command`](crate::remote::Command).
pub fn remote_action<'a, O, F>(future: F) -> StepFuture<'a>
where
    O: RemoteOutput,
    F: Future<Output = O> + Send + 'a,
{
    O::boxed(future)
}

/// The return type of a remote step's function: `Result<C, StepError>`, `C` a command.
#[diagnostic::on_unimplemented(
    message = "a `remote` step must return `Result<C, StepError>` with `C` a command, not `{Self}`",
    label = "`C` must implement `saga_runtime::remote::Command` (its service, action and reply)"
)]
pub trait RemoteOutput: Sized {
    /// Boxes a future of this output, the command as JSON on success.
    fn boxed<'a, F: Future<Output = Self> + Send + 'a>(future: F) -> StepFuture<'a>;
}

impl<C: crate::remote::Command> RemoteOutput for Result<C, StepError> {
    fn boxed<'a, F: Future<Output = Self> + Send + 'a>(future: F) -> StepFuture<'a> {
        Box::pin(futures_util::FutureExt::map(future, |result| {
            result.and_then(outbound).map(Some)
        }))
    }
}

/// Which parameters a compensation takes besides its step's: nothing.
pub struct Same;

/// Which parameters a compensation takes besides its step's: the step's output, last.
pub struct WithOutput;

/// Reads step `S`'s recorded output (for its compensation, or a later step that takes it), or
/// says why it cannot be.
fn output_of<S: crate::NamedStep>(
    recorded: Option<&crate::OutputValue>,
) -> Result<S::Output, StepError>
where
    S::Output: crate::StepValue,
{
    crate::output::read(recorded).map_err(|e| {
        StepError::permanent(format!(
            "the output recorded for step `{}` cannot be read: {e}",
            S::NAME
        ))
    })
}

/// A compensation of step `S` that takes the context only, like its step (`Args = Same`), or the
/// context and the step's output (`Args = WithOutput`).
///
/// rustc reports most mismatches (parameters, return type, a future that is not `Send`) on the
/// `Fn` bound with its own precise message; this one covers a `compensate` that is not a function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot compensate step `{S}`",
    label = "expected an `async fn({R}) -> Result<(), StepError>`, or one taking the step's output last",
    note = "a compensation is an `async fn` with the same parameters as its step and, optionally, the step's output"
)]
pub trait Compensation<'a, S, R: 'a, Args> {
    /// Runs one attempt. `R` is the context as the step takes it: `&mut Ctx`, or `&Ctx`.
    fn call(self, ctx: R, recorded: Option<&'a crate::OutputValue>) -> StepFuture<'a>;
}

impl<'a, S, R: 'a, F, Fut, U> Compensation<'a, S, R, Same> for F
where
    F: FnOnce(R) -> Fut,
    Fut: Future<Output = Result<U, StepError>> + Send + 'a,
    U: Undone + 'a,
{
    fn call(self, ctx: R, _: Option<&'a crate::OutputValue>) -> StepFuture<'a> {
        Box::pin(futures_util::FutureExt::map(self(ctx), undone))
    }
}

impl<'a, S: crate::NamedStep, R: 'a, F, Fut, U> Compensation<'a, S, R, WithOutput> for F
where
    S::Output: crate::StepValue,
    F: FnOnce(R, S::Output) -> Fut,
    Fut: Future<Output = Result<U, StepError>> + Send + 'a,
    U: Undone + 'a,
{
    fn call(self, ctx: R, recorded: Option<&'a crate::OutputValue>) -> StepFuture<'a> {
        match output_of::<S>(recorded) {
            Ok(output) => Box::pin(futures_util::FutureExt::map(self(ctx, output), undone)),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }
}

/// A compensation of step `S` that takes the context and the step handle `H`, like its step, and
/// optionally the step's output, last.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot compensate step `{S}`",
    label = "expected an `async fn({R}, &{H}) -> Result<(), StepError>`, or one taking the step's output last",
    note = "a compensation is an `async fn` with the same parameters as its step and, optionally, the step's output"
)]
pub trait CompensationWith<'a, S, R: 'a, H: ?Sized + 'a, Args> {
    /// Runs one attempt. `R` is the context as the step takes it: `&mut Ctx`, or `&Ctx`.
    fn call(self, ctx: R, cx: &'a H, recorded: Option<&'a crate::OutputValue>) -> StepFuture<'a>;
}

impl<'a, S, R: 'a, H: ?Sized + 'a, F, Fut, U> CompensationWith<'a, S, R, H, Same> for F
where
    F: FnOnce(R, &'a H) -> Fut,
    Fut: Future<Output = Result<U, StepError>> + Send + 'a,
    U: Undone + 'a,
{
    fn call(self, ctx: R, cx: &'a H, _: Option<&'a crate::OutputValue>) -> StepFuture<'a> {
        Box::pin(futures_util::FutureExt::map(self(ctx, cx), undone))
    }
}

impl<'a, S: crate::NamedStep, R: 'a, H: ?Sized + 'a, F, Fut, U>
    CompensationWith<'a, S, R, H, WithOutput> for F
where
    S::Output: crate::StepValue,
    F: FnOnce(R, &'a H, S::Output) -> Fut,
    Fut: Future<Output = Result<U, StepError>> + Send + 'a,
    U: Undone + 'a,
{
    fn call(self, ctx: R, cx: &'a H, recorded: Option<&'a crate::OutputValue>) -> StepFuture<'a> {
        match output_of::<S>(recorded) {
            Ok(output) => Box::pin(futures_util::FutureExt::map(self(ctx, cx, output), undone)),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }
}

/// One attempt of the compensation `F` of step `S`, which takes the context only (and maybe
/// the step's output), as `R`: `&mut Ctx` or `&Ctx`, as the step does.
pub fn compensation<'a, S, R: 'a, Args, F: Compensation<'a, S, R, Args>>(
    f: F,
    ctx: R,
    recorded: Option<&'a crate::OutputValue>,
) -> StepFuture<'a> {
    f.call(ctx, recorded)
}

/// One attempt of the compensation `F` of step `S`, which takes the context and the handle (and
/// maybe the step's output).
pub fn compensation_with<
    'a,
    S,
    R: 'a,
    H: ?Sized + 'a,
    Args,
    F: CompensationWith<'a, S, R, H, Args>,
>(
    f: F,
    ctx: R,
    cx: &'a H,
    recorded: Option<&'a crate::OutputValue>,
) -> StepFuture<'a> {
    f.call(ctx, cx, recorded)
}

/// A parameter of a step after the context and the handle: the output of an earlier step.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the output of an earlier step",
    label = "take an earlier step's output as `Output<step>`",
    note = "a saga step's parameters are the context (`&mut Ctx` or `&Ctx`), optionally the step handle (`&StepCx<Deps>`), then outputs of earlier steps (`Output<step>`)"
)]
pub trait StepInput: Sized {
    /// The step whose output it is.
    type From: crate::NamedStep;
    /// That step's name.
    const NAME: &'static str;

    /// Reads it from what the attempt was given.
    fn read<D>(cx: &StepCx<D>) -> Result<Self, StepError>;
}

impl<S: crate::NamedStep> StepInput for crate::Output<S>
where
    S::Output: crate::StepValue,
{
    type From = S;
    const NAME: &'static str = S::NAME;

    fn read<D>(cx: &StepCx<D>) -> Result<Self, StepError> {
        output_of::<S>(cx.input(S::NAME)).map(crate::Output)
    }
}

/// Implemented by `saga!` for every step listed before the step at position `P` of the saga:
/// the steps whose outputs that step may take.
#[diagnostic::on_unimplemented(
    message = "step `{Self}` does not run before the step that takes its output",
    label = "this step takes the output of `{Self}`",
    note = "a step can take the output of a step listed before it in `saga!`, not of itself, of a later step or of a member of its own group"
)]
pub trait RunsBefore<P> {}

/// Implemented by `#[saga_step]`: the step at position `P` of a saga may take the outputs it
/// takes (every step they come from runs before it).
pub trait InputsRunBefore<P> {}

/// Fails to compile, at the step's name in `saga!`, when the step takes the output of a step
/// that does not run before it.
pub const fn assert_inputs_run_before<S: InputsRunBefore<P>, P>() {}

/// An attempt that fails at once with `error` (an input that cannot be read).
pub fn failed<'a>(error: StepError) -> StepFuture<'a> {
    Box::pin(std::future::ready(Err(error)))
}

/// A step that may stand in for step `S` of a saga over `C` and `D`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the fallback of step `{S}`",
    label = "not a `#[saga_step]` over context `{C}`",
    note = "a fallback is itself a `#[saga_step]` over the same context and dependencies as the step it stands in for, returning the same output"
)]
pub trait FallbackOf<S, C, D>: SagaStep<C, D> {}

impl<F, S, C, D> FallbackOf<S, C, D> for F
where
    F: Declared + SagaStep<C, D, Output = <S as crate::NamedStep>::Output>,
    S: crate::NamedStep,
{
}

/// The table of step `S`'s fallback `F`; fails to compile, at the fallback's name, when `F` is not
/// a step of the same saga types.
pub const fn fallback<F: FallbackOf<S, C, D>, S, C, D>() -> Option<fn() -> StepDef<C, D>> {
    Some(StepDef::<C, D>::of::<F>)
}

/// Implemented by `#[saga_step]`, as [`DeclaresUndo`], for steps that say what rollback does with
/// them: required of the fallback of a step that does, since it stands in for that step.
#[diagnostic::on_unimplemented(
    message = "fallback `{Self}` says nothing about compensation",
    label = "it stands in for a step that says what rollback does with it",
    note = "add `compensate = <fn>`, `pivot` or `nothing_to_undo` to its `#[saga_step(...)]`"
)]
pub trait FallbackDeclaresUndo {}

/// [`fallback`] of a step that says what rollback does with it: its fallback must too.
pub const fn fallback_declaring_undo<F: FallbackOf<S, C, D> + FallbackDeclaresUndo, S, C, D>(
) -> Option<fn() -> StepDef<C, D>> {
    Some(StepDef::<C, D>::of::<F>)
}

/// Implemented by `#[saga_step]`, as [`ReadsContextOnly`], for steps that take the context by
/// `&`: required of the fallback of such a step, which may run in a parallel group in its place.
#[diagnostic::on_unimplemented(
    message = "fallback `{Self}` may change the context",
    label = "it stands in for a step that only reads the context (`&Ctx`)",
    note = "take the context by `&Ctx` in the fallback too"
)]
pub trait FallbackReadsContextOnly {}

/// [`fallback`] of a step that only reads the context: its fallback must too.
pub const fn fallback_reading<F: FallbackOf<S, C, D> + FallbackReadsContextOnly, S, C, D>(
) -> Option<fn() -> StepDef<C, D>> {
    Some(StepDef::<C, D>::of::<F>)
}

/// [`fallback`] of a step that only reads the context and says what rollback does with it.
pub const fn fallback_reading_declaring_undo<
    F: FallbackOf<S, C, D> + FallbackReadsContextOnly + FallbackDeclaresUndo,
    S,
    C,
    D,
>() -> Option<fn() -> StepDef<C, D>> {
    Some(StepDef::<C, D>::of::<F>)
}

pub use crate::client::SagaRequest;
pub use crate::engine::Engine;
pub use crate::saga::SagaDescription;
pub use crate::{SagaError, SagaId, SagaOutcome, SagaStatus};

/// The compensation of a step that declares none; the executor never calls it, and if it ever
/// did, the saga would see a permanent error rather than a panic.
pub fn no_compensation<'a>() -> StepFuture<'a> {
    Box::pin(async {
        Err(crate::StepError::permanent(
            "this step declares no compensation",
        ))
    })
}

pub use crate::choreography::support::*;
