//! What expansions of `saga!` and `#[saga_step]` need. Not public API: it may change in any
//! release; `saga-macros` is pinned to an exact version of this crate for that reason.

pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{self, Err, Ok};
pub use std::boxed::Box;
pub use std::time::Duration;

pub use crate::engine::SagaClient;
pub use crate::saga::{Saga, SagaContext, SagaOptions, StepEnum};
pub use crate::step::{
    CompensationRetries, SagaStep, StepCx, StepDef, StepDescription, StepFuture, StepPolicy, Undo,
};

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

/// Fails to compile, at the context type in `saga!`, when it cannot be persisted.
pub const fn assert_context<T: SagaContext>() {}

/// Fails to compile, at the fallback's name, when it is not a step of the same saga types.
pub const fn assert_fallback<F: SagaStep<C, D>, C, D>() {}

/// The dependencies type of a step handle parameter: `&StepCx<D>` gives `D`.
#[diagnostic::on_unimplemented(
    message = "the second parameter of a saga step must be the step handle `&StepCx<Deps>`",
    label = "expected `StepCx<...>`, found `{Self}`"
)]
pub trait StepHandle {
    /// `D` of `StepCx<D>`.
    type Deps: Send + Sync + 'static;
}

impl<D: Send + Sync + 'static> StepHandle for StepCx<D> {
    type Deps = D;
}

pub use crate::engine::{Engine, SagaRequest};
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
