//! What the decision needs of a saga's definition: its steps' policies, which have a fallback or a
//! compensation, and the saga's options. A view, so that the generated step table (and later a
//! definition built at run time, or read back by a tool) can be decided on without copying it.

use std::ops::Range;

use crate::step::{StepDef, StepFn};
use crate::{SagaOptions, StepPolicy, Undo};

/// A saga definition as the decision sees it.
pub(crate) trait Definition {
    /// Saga-wide options.
    fn options(&self) -> SagaOptions;
    /// How many steps.
    fn len(&self) -> usize;
    /// The policy of step `step`'s action, or of its fallback's when `fallback`.
    fn policy(&self, step: usize, fallback: bool) -> StepPolicy;
    /// Whether step `step` declares a fallback.
    fn has_fallback(&self, step: usize) -> bool;
    /// Whether step `step` (or its fallback, when `fallback`) has a compensation.
    fn compensates(&self, step: usize, fallback: bool) -> bool;

    /// The steps that run together with step `step`: its parallel group, or the step alone.
    fn stage(&self, step: usize) -> Range<usize> {
        step..step + 1
    }

    /// Whether the saga has a parallel group (when it has none, every stage is one step).
    fn grouped(&self) -> bool {
        false
    }

    /// Whether a completed step is the point of no return.
    fn is_pivot(&self, step: usize, fallback: bool) -> bool {
        self.policy(step, fallback).undo == Undo::Pivot
    }

    /// The first step that is a pivot, or whose fallback is one: what a saga's state records
    /// for operators' requests (see `SagaState::pivot`).
    fn pivot(&self) -> Option<usize> {
        (0..self.len()).find(|&step| {
            self.is_pivot(step, false) || (self.has_fallback(step) && self.is_pivot(step, true))
        })
    }
}

/// The generated step table of a saga, with its options.
pub(crate) struct StepTable<C: 'static, D: 'static> {
    pub(crate) steps: &'static [StepDef<C, D>],
    pub(crate) options: SagaOptions,
    /// The parallel groups, as ranges of step positions, in order.
    pub(crate) groups: &'static [Range<usize>],
}

impl<C, D> StepTable<C, D> {
    /// The definition that runs for step `step`: its own, or its fallback's.
    pub(crate) fn def(&self, step: usize, fallback: bool) -> StepDef<C, D> {
        self.with_def(step, fallback, |def| *def)
    }

    /// `f` of the definition that runs for step `step`, without copying the step's own (the
    /// decision asks about every completed step each time it decides).
    fn with_def<R>(&self, step: usize, fallback: bool, f: impl FnOnce(&StepDef<C, D>) -> R) -> R {
        let def = &self.steps[step];
        match (fallback, def.fallback) {
            (true, Some(fallback)) => f(&fallback()),
            _ => f(def),
        }
    }

    /// The function an attempt runs: the action (or fallback) or the compensation.
    pub(crate) fn func(&self, step: usize, fallback: bool, compensation: bool) -> StepFn<C, D> {
        let def = self.def(step, fallback);
        match compensation {
            // The decision only compensates steps that have a compensation.
            true => def
                .compensate
                .unwrap_or(|_, _| crate::__private::no_compensation()),
            false => def.action,
        }
    }
}

impl<C, D> Definition for StepTable<C, D> {
    fn options(&self) -> SagaOptions {
        self.options
    }

    fn len(&self) -> usize {
        self.steps.len()
    }

    fn policy(&self, step: usize, fallback: bool) -> StepPolicy {
        self.with_def(step, fallback, |def| *def.policy())
    }

    fn has_fallback(&self, step: usize) -> bool {
        self.steps[step].fallback.is_some()
    }

    fn compensates(&self, step: usize, fallback: bool) -> bool {
        self.with_def(step, fallback, |def| def.compensate.is_some())
    }

    fn is_pivot(&self, step: usize, fallback: bool) -> bool {
        self.with_def(step, fallback, |def| def.policy().undo == Undo::Pivot)
    }

    fn stage(&self, step: usize) -> Range<usize> {
        stage_of(self.groups, step)
    }

    fn grouped(&self) -> bool {
        !self.groups.is_empty()
    }
}

/// The stage of step `step` among `groups`: its group, or the step alone.
#[inline]
pub(crate) fn stage_of(groups: &[Range<usize>], step: usize) -> Range<usize> {
    if groups.is_empty() {
        return step..step + 1;
    }
    groups
        .iter()
        .find(|group| group.contains(&step))
        .cloned()
        .unwrap_or(step..step + 1)
}
