//! What `saga!` checks of each path it lists, and `#[saga_step]` of the `fallback` it names:
//! that it is a `#[saga_step]`.
//!
//! `saga!` names each listed path once, importing it (`use reserve as __SagaStep0;`) next to a
//! glob import of [`not_steps`]. An import takes every namespace the path has, and shadows the
//! glob in those only. A `#[saga_step]` has a type (its hidden struct) and a value (the
//! function), so the import wins in both; a plain function has only a value, so the type comes
//! from the glob: a [`NotAStep`], which `saga!`'s check reports as one error at the function's
//! name, saying what is missing, where rustc would say "expected type, found function". A path
//! that names nothing fails its import, and the glob's value [`NothingThere`] keeps the check
//! quiet, so that rustc's "unresolved import" is the only error.

use crate::step::{SagaStep, StepCx, StepDef, StepDescription, StepFuture, StepPolicy};

/// Implemented by `#[saga_step]` for the hidden type that shares the step function's name.
pub trait Declared {}

/// The type that stands in for listed path number `I` when the path has no type of its own (a
/// plain function): it fits any saga, so that the one error about it is [`Listed`]'s.
pub struct NotAStep<const I: usize>;

/// The value that stands in for a listed path that names nothing: its import failed already.
pub struct NothingThere;

/// A path listed in `saga!` or named as a `fallback`, whose value is a `V`: a `#[saga_step]`.
#[diagnostic::on_unimplemented(
    message = "this is not a saga step: a function listed in `saga!` or named as a `fallback` is marked `#[saga_step(...)]`",
    label = "not marked `#[saga_step]`",
    note = "mark the function `#[saga_step(compensate = <fn>)]`, `#[saga_step(nothing_to_undo)]` or `#[saga_step(pivot)]` (the last step of a saga may say nothing)"
)]
pub trait Listed<V> {}

#[diagnostic::do_not_recommend]
impl<T: Declared, V> Listed<V> for T {}

/// A listed path that names nothing (already reported by rustc).
pub trait Unresolved {}

impl Unresolved for NothingThere {}

#[diagnostic::do_not_recommend]
impl<const I: usize, V: Unresolved> Listed<V> for NotAStep<I> {}

/// Fails to compile, at the step's name in `saga!`, when the path listed there is not a
/// `#[saga_step]` (`value` is what the path names in the value namespace).
pub const fn assert_listed<T: Listed<V>, V>(value: &V) {
    let _ = value;
}

impl<const I: usize> crate::NamedStep for NotAStep<I> {
    const NAME: &'static str = "";
    type Output = ();
}

impl<C, D, const I: usize> SagaStep<C, D> for NotAStep<I> {
    const DESCRIPTION: StepDescription = StepDescription {
        name: "",
        policy: StepPolicy::DEFAULT,
        compensation: None,
        fallback: None,
        inputs: &[],
        output: None,
        remote: None,
    };
    const FALLBACK: Option<fn() -> StepDef<C, D>> = None;

    fn action<'a>(_: &'a mut C, _: &'a StepCx<D>) -> StepFuture<'a> {
        super::no_compensation()
    }

    fn compensate<'a>(_: &'a mut C, _: &'a StepCx<D>) -> StepFuture<'a> {
        super::no_compensation()
    }
}

impl<const I: usize, S, C, D> super::FallbackOf<S, C, D> for NotAStep<I> {}
impl<const I: usize> super::FallbackDeclaresUndo for NotAStep<I> {}
impl<const I: usize> super::FallbackReadsContextOnly for NotAStep<I> {}
impl<const I: usize> super::DeclaresUndo for NotAStep<I> {}
impl<const I: usize> super::ReadsContextOnly for NotAStep<I> {}
impl<const I: usize> super::NotPivot for NotAStep<I> {}
impl<const I: usize, P> super::InputsRunBefore<P> for NotAStep<I> {}

/// The stand-ins `saga!` imports by glob, one type and one value per position: `__SagaStep{i}`
/// for the step at position `i` (positions past the last stand-in get rustc's errors).
#[allow(non_upper_case_globals, non_camel_case_types)]
pub mod not_steps {
    use super::{NotAStep, NothingThere};

    macro_rules! stand_ins {
        ($($name:ident $i:literal)*) => {
            $(
                pub type $name = NotAStep<$i>;
                pub const $name: NothingThere = NothingThere;
            )*
        };
    }

    stand_ins! {
        __SagaStep0 0 __SagaStep1 1 __SagaStep2 2 __SagaStep3 3 __SagaStep4 4 __SagaStep5 5
        __SagaStep6 6 __SagaStep7 7 __SagaStep8 8 __SagaStep9 9 __SagaStep10 10 __SagaStep11 11
        __SagaStep12 12 __SagaStep13 13 __SagaStep14 14 __SagaStep15 15 __SagaStep16 16
        __SagaStep17 17 __SagaStep18 18 __SagaStep19 19 __SagaStep20 20 __SagaStep21 21
        __SagaStep22 22 __SagaStep23 23 __SagaStep24 24 __SagaStep25 25 __SagaStep26 26
        __SagaStep27 27 __SagaStep28 28 __SagaStep29 29 __SagaStep30 30 __SagaStep31 31
        __SagaStep32 32 __SagaStep33 33 __SagaStep34 34 __SagaStep35 35 __SagaStep36 36
        __SagaStep37 37 __SagaStep38 38 __SagaStep39 39 __SagaStep40 40 __SagaStep41 41
        __SagaStep42 42 __SagaStep43 43 __SagaStep44 44 __SagaStep45 45 __SagaStep46 46
        __SagaStep47 47 __SagaStep48 48 __SagaStep49 49 __SagaStep50 50 __SagaStep51 51
        __SagaStep52 52 __SagaStep53 53 __SagaStep54 54 __SagaStep55 55 __SagaStep56 56
        __SagaStep57 57 __SagaStep58 58 __SagaStep59 59 __SagaStep60 60 __SagaStep61 61
        __SagaStep62 62 __SagaStep63 63
    }
}
