//! What [`SagaBuilder::build`](super::SagaBuilder::build) refuses: the misdeclarations `saga!`
//! rejects at compile time that only a built definition's shape shows.

use std::collections::HashSet;
use std::ops::Range;

use crate::step::StepDef;
use crate::Undo;

/// Why a definition cannot be built, naming the saga and the step at fault.
///
/// ```
/// use saga_runtime::{BuildError, SagaDefinition};
///
/// let error = SagaDefinition::<(), ()>::builder("Empty").build().unwrap_err();
/// assert_eq!(error, BuildError::NoSteps { saga: "Empty".into() });
/// assert_eq!(error.to_string(), "saga `Empty` has no steps: add at least one with `.step::<...>()`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The definition's name is empty: it is what the saga is recorded and recovered under.
    #[error(
        "a saga definition needs a name: it is what its sagas are recorded and recovered under"
    )]
    NoName,
    /// No step was added.
    #[error("saga `{saga}` has no steps: add at least one with `.step::<...>()`")]
    NoSteps {
        /// The saga.
        saga: String,
    },
    /// A parallel group was given no member.
    #[error(
        "saga `{saga}` has an empty parallel group after {after} step(s): a group needs members"
    )]
    EmptyGroup {
        /// The saga.
        saga: String,
        /// How many steps come before it.
        after: usize,
    },
    /// A step (or the same instance of one) was added twice.
    #[error("saga `{saga}` lists step `{step}` twice: run a step more than once as numbered instances (`.instance::<...>(i)`)")]
    DuplicateStep {
        /// The saga.
        saga: String,
        /// The step.
        step: String,
    },
    /// A step that is not the last says nothing about what rollback does with it.
    #[error("step `{step}` of saga `{saga}` says nothing about compensation, but it is not the last, so a later failure may need to undo it: add `compensate = <fn>`, `pivot` or `nothing_to_undo` to its `#[saga_step(...)]`")]
    NoRollbackRule {
        /// The saga.
        saga: String,
        /// The step.
        step: String,
    },
    /// The deadline is zero: every saga would be past it before its first step.
    #[error(
        "saga `{saga}` has a zero deadline: every saga would be past it before its first step"
    )]
    ZeroDeadline {
        /// The saga.
        saga: String,
    },
    /// A step (or its fallback) takes the output of a step that does not run before it.
    #[error("step `{step}` of saga `{saga}` takes the output of `{input}`, which does not run before it (a step can take the output of an earlier step, not of itself, a later step, a member of its own group, or a step run as instances)")]
    InputNotBefore {
        /// The saga.
        saga: String,
        /// The step taking it.
        step: String,
        /// The step whose output it takes.
        input: String,
    },
}

/// The first thing `saga!` would have refused about these steps, if any.
pub(super) fn check<C, D>(
    name: &str,
    steps: &[StepDef<C, D>],
    groups: &[Range<usize>],
    empty_groups: &[usize],
) -> Result<(), BuildError> {
    let saga = || name.to_owned();
    if name.is_empty() {
        return Err(BuildError::NoName);
    }
    if let Some(&after) = empty_groups.first() {
        return Err(BuildError::EmptyGroup {
            saga: saga(),
            after,
        });
    }
    if steps.is_empty() {
        return Err(BuildError::NoSteps { saga: saga() });
    }
    let mut seen = HashSet::new();
    if let Some(step) = steps.iter().find(|def| !seen.insert(def.name())) {
        return Err(BuildError::DuplicateStep {
            saga: saga(),
            step: step.name().to_owned(),
        });
    }
    let stage = |step: usize| crate::machine::stage_of(groups, step);
    // Every step needs a rule but the last one; the members of a final group too, since a
    // member failing leaves its siblings' work to undo.
    let last = stage(steps.len() - 1);
    let needs_rule = |step: usize| step < last.start || last.len() > 1;
    if let Some(def) = steps
        .iter()
        .enumerate()
        .find(|&(i, def)| needs_rule(i) && def.policy().undo == Undo::Unspecified)
        .map(|(_, def)| def)
    {
        return Err(BuildError::NoRollbackRule {
            saga: saga(),
            step: def.name().to_owned(),
        });
    }
    for (i, def) in steps.iter().enumerate() {
        let earlier = &steps[..stage(i).start];
        let runs_before = |input: &str| earlier.iter().any(|e| e.name() == input);
        let fallback = def.fallback.map(|f| f());
        let inputs = def
            .description
            .inputs
            .iter()
            .chain(fallback.iter().flat_map(|f| f.description.inputs));
        if let Some(input) = inputs.into_iter().find(|input| !runs_before(input)) {
            return Err(BuildError::InputNotBefore {
                saga: saga(),
                step: def.name().to_owned(),
                input: (*input).to_owned(),
            });
        }
    }
    Ok(())
}
