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

/// A saga's definition as the executor runs it: its name, steps, groups and options, and its
/// metric handles. `saga!` makes one, once, in a static of the saga type (see [`Saga::table`]);
/// a built definition ([`crate::SagaDefinition`]) is one made at run time, and leaked. Runs and
/// clients refer to it: it is 100 bytes that every saga in flight would otherwise carry twice.
///
/// [`Saga::table`]: crate::Saga::table
#[doc(hidden)]
pub struct StepTable<C: 'static, D: 'static> {
    /// The saga's type name, as recorded.
    pub(crate) name: &'static str,
    pub(crate) steps: &'static [StepDef<C, D>],
    pub(crate) options: SagaOptions,
    /// The parallel groups, as ranges of step positions, in order.
    pub(crate) groups: &'static [Range<usize>],
    /// Its metric handles, registered at its first saga (with the recorder installed then).
    pub(crate) metrics: Metrics,
    /// The step names by position, for outcomes.
    pub(crate) names: crate::output::StepNames,
}

/// Where a definition's metric handles are: registered at the first saga that uses them, not
/// when the definition is made (the recorder may be installed in between).
#[derive(Clone, Copy)]
pub(crate) enum Metrics {
    /// `saga!`'s, in a static of the saga type.
    Generated(fn() -> &'static crate::metrics::SagaMetrics),
    /// A built definition's, beside it.
    Built(&'static std::sync::OnceLock<crate::metrics::SagaMetrics>),
}

impl<C, D> Clone for StepTable<C, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, D> Copy for StepTable<C, D> {}

impl<C, D> StepTable<C, D> {
    /// The metric handles, registered now if they were not yet.
    pub(crate) fn metrics(&self) -> &'static crate::metrics::SagaMetrics {
        match self.metrics {
            Metrics::Generated(metrics) => metrics(),
            Metrics::Built(cell) => {
                cell.get_or_init(|| crate::metrics::SagaMetrics::of(self.name, self.steps))
            }
        }
    }

    /// The name of step `step`.
    pub(crate) fn name_of(&self, step: usize) -> &'static str {
        self.steps.get(step).map_or("?", |def| def.name())
    }

    /// The table of the steps `saga!` generated for `S`, which keeps it in a static.
    #[doc(hidden)]
    pub fn generated<S>() -> Self
    where
        S: crate::Saga<Context = C, Deps = D>,
    {
        StepTable {
            name: S::NAME,
            steps: S::steps(),
            options: S::OPTIONS,
            groups: S::GROUPS,
            metrics: Metrics::Generated(S::metrics),
            names: crate::output::StepNames::Generated(|step| {
                S::steps().get(step).map_or("?", |def| def.name())
            }),
        }
    }

    /// The step names, in order.
    pub(crate) fn step_names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|def| def.name()).collect()
    }

    /// The position of the step named `name`.
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|def| def.name() == name)
    }

    /// The static description: name, options, steps and their policies, groups.
    pub(crate) fn description(&self) -> crate::SagaDescription {
        crate::SagaDescription {
            name: self.name,
            options: self.options,
            steps: self.steps.iter().map(|s| s.description).collect(),
            groups: self.groups.to_vec(),
        }
    }

    /// The definition that runs for step `step`: its own, or its fallback's (which, for an
    /// instance of a step, is the same instance of the fallback).
    pub(crate) fn def(&self, step: usize, fallback: bool) -> StepDef<C, D> {
        let own = &self.steps[step];
        match (fallback, own.fallback) {
            (true, Some(fallback)) => fallback().instance_of(own.instance),
            _ => *own,
        }
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
