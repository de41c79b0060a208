//! What expansions of `saga!` and `#[saga_step]` need. Not public API: it may change in any
//! release; `saga-macros` is pinned to an exact version of this crate for that reason.

pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{self, Err, Ok};
pub use std::boxed::Box;
pub use std::sync::OnceLock;
pub use std::time::Duration;

use std::future::Future;

use crate::StepError;

pub use crate::client::SagaClient;
pub use crate::metrics::SagaMetrics;
pub use crate::saga::{Saga, SagaContext, SagaOptions, StepEnum};
pub use crate::step::{
    CompensationRetries, SagaStep, StepCx, StepDef, StepDescription, StepFuture, StepPolicy, Undo,
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

/// What a step's action returns. Only `Result<(), StepError>` is one; the bound sits on the
/// step's declared return type, so a wrong one is reported there.
#[diagnostic::on_unimplemented(
    message = "a saga step must return `Result<(), StepError>`, not `{Self}`",
    label = "expected `Result<(), StepError>`"
)]
pub trait StepOutput: Sized {
    /// Boxes a future of this output.
    fn boxed<'a, F: Future<Output = Self> + Send + 'a>(future: F) -> StepFuture<'a>;
}

impl StepOutput for Result<(), StepError> {
    fn boxed<'a, F: Future<Output = Self> + Send + 'a>(future: F) -> StepFuture<'a> {
        Box::pin(future)
    }
}

/// One attempt of a step's action, boxed. `O` is the step's declared return type, so that a
/// wrong one fails at it; `F` is inferred, at the step's name, so that a future that is not
/// `Send` fails there.
pub fn action<'a, O: StepOutput, F: Future<Output = O> + Send + 'a>(future: F) -> StepFuture<'a> {
    O::boxed(future)
}

/// A compensation of step `S` that takes the context only, like its step.
///
/// rustc reports most mismatches (parameters, return type, a future that is not `Send`) on the
/// `Fn` bound with its own precise message; this one covers a `compensate` that is not a function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot compensate step `{S}`",
    label = "expected an `async fn(&mut {C}) -> Result<(), StepError>`",
    note = "a compensation is an `async fn` with the same parameters as its step"
)]
pub trait Compensation<'a, S, C: 'a> {
    /// Runs one attempt.
    fn call(self, ctx: &'a mut C) -> StepFuture<'a>;
}

impl<'a, S, C: 'a, F, Fut> Compensation<'a, S, C> for F
where
    F: FnOnce(&'a mut C) -> Fut,
    Fut: Future<Output = Result<(), StepError>> + Send + 'a,
{
    fn call(self, ctx: &'a mut C) -> StepFuture<'a> {
        Box::pin(self(ctx))
    }
}

/// A compensation of step `S` that takes the context and the step handle `H`, like its step.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot compensate step `{S}`",
    label = "expected an `async fn(&mut {C}, &{H}) -> Result<(), StepError>`",
    note = "a compensation is an `async fn` with the same parameters as its step"
)]
pub trait CompensationWith<'a, S, C: 'a, H: ?Sized + 'a> {
    /// Runs one attempt.
    fn call(self, ctx: &'a mut C, cx: &'a H) -> StepFuture<'a>;
}

impl<'a, S, C: 'a, H: ?Sized + 'a, F, Fut> CompensationWith<'a, S, C, H> for F
where
    F: FnOnce(&'a mut C, &'a H) -> Fut,
    Fut: Future<Output = Result<(), StepError>> + Send + 'a,
{
    fn call(self, ctx: &'a mut C, cx: &'a H) -> StepFuture<'a> {
        Box::pin(self(ctx, cx))
    }
}

/// One attempt of the compensation `F` of step `S`, which takes the context only.
pub fn compensation<'a, S, C: 'a, F: Compensation<'a, S, C>>(
    f: F,
    ctx: &'a mut C,
) -> StepFuture<'a> {
    f.call(ctx)
}

/// One attempt of the compensation `F` of step `S`, which takes the context and the handle.
pub fn compensation_with<'a, S, C: 'a, H: ?Sized + 'a, F: CompensationWith<'a, S, C, H>>(
    f: F,
    ctx: &'a mut C,
    cx: &'a H,
) -> StepFuture<'a> {
    f.call(ctx, cx)
}

/// A step that may stand in for step `S` of a saga over `C` and `D`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the fallback of step `{S}`",
    label = "not a `#[saga_step]` over context `{C}`",
    note = "a fallback is itself a `#[saga_step]` over the same context and dependencies as the step it stands in for"
)]
pub trait FallbackOf<S, C, D>: SagaStep<C, D> {}

impl<F: SagaStep<C, D>, S, C, D> FallbackOf<S, C, D> for F {}

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
