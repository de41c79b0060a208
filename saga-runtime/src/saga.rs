//! Saga definitions: the trait `saga!` implements, the generated step enum's trait, and the
//! static description of a saga.
//!
//! # Order
//!
//! Steps run one after another in declaration order, but the members of a parallel group, which
//! run at once. When a step fails for good (after its retries, and after its fallback if it has
//! one), the steps that completed are compensated in reverse order: the most recent first,
//! because later undos may depend on earlier ones (a group's members at once). Steps without a
//! compensation (a pivot, a `nothing_to_undo` step, the last step) are skipped.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::step::{StepDef, StepDescription};

/// What a saga's context must be: it is the saga's persisted state, cloned before each attempt
/// so that a failed attempt's changes can be discarded.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a saga context",
    label = "this type is not `Clone + Serialize + DeserializeOwned + Send + Sync + 'static`",
    note = "the context is what a saga persists: derive `Clone, serde::Serialize, serde::Deserialize` on it"
)]
pub trait SagaContext: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T> SagaContext for T where T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

/// The step enum `saga!` generates (`OrderSagaStep`): one variant per step, displayed as the
/// step's name.
pub trait StepEnum: Copy + Eq + fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// Every step, in declaration order.
    const ALL: &'static [Self];

    /// The step's position in the saga, from 0.
    fn index(self) -> usize;

    /// The step's name: its function's name.
    fn name(self) -> &'static str;

    /// The step at a position.
    fn from_index(index: usize) -> Option<Self> {
        Self::ALL.get(index).copied()
    }

    /// The step at position `index`, named `name` in the definition that runs it (a built
    /// definition's steps are only known with it).
    #[doc(hidden)]
    fn at(index: usize, name: &'static str) -> Option<Self> {
        let _ = name;
        Self::from_index(index)
    }
}

/// Saga-wide options, from `#[saga(...)]` inside `saga!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SagaOptions {
    /// `#[saga(best_effort_rollback)]`: when a compensation fails for good, go on compensating
    /// the older steps and report every failure, instead of stopping.
    pub best_effort_rollback: bool,
    /// `#[saga(deadline = "30s")]`: the whole saga's deadline; past it the saga stops at the
    /// next step boundary and compensates, like a cancellation.
    pub deadline: Option<Duration>,
}

impl SagaOptions {
    /// No deadline, stop compensating at the first compensation that fails for good.
    pub const DEFAULT: SagaOptions = SagaOptions {
        best_effort_rollback: false,
        deadline: None,
    };
}

impl Default for SagaOptions {
    fn default() -> Self {
        SagaOptions::DEFAULT
    }
}

/// Implemented by `saga!` for the saga type (`OrderSaga`). The runtime's executor is generic over
/// it; the generated inherent methods (`run`, `start`, `status`, ...) call into the runtime with
/// it.
pub trait Saga: Send + Sync + 'static {
    /// The persisted context.
    type Context: SagaContext;
    /// The shared, non-persisted dependencies handed to steps through [`StepCx`](crate::StepCx).
    type Deps: Send + Sync + 'static;
    /// The generated step enum.
    type Step: StepEnum;

    /// The saga's type name, e.g. `"OrderSaga"`.
    const NAME: &'static str;
    /// Saga-wide options.
    const OPTIONS: SagaOptions;
    /// The parallel groups (`parallel(a, b)` in `saga!`), as ranges of step positions, in order.
    const GROUPS: &'static [Range<usize>] = &[];

    /// The steps, in declaration order.
    fn steps() -> &'static [StepDef<Self::Context, Self::Deps>];

    /// This type's metric handles, registered at its first saga (see the `metrics` module).
    #[doc(hidden)]
    fn metrics() -> &'static crate::metrics::SagaMetrics;

    /// The definition the executor runs, made once and kept in a static of this type.
    #[doc(hidden)]
    fn table() -> &'static crate::machine::StepTable<Self::Context, Self::Deps>;

    /// The dependencies a run gets when none are given: `Deps::default()` when the dependencies
    /// type is `Default` (`saga!` says so), `None` otherwise.
    fn default_deps() -> Option<std::sync::Arc<Self::Deps>> {
        None
    }

    /// The static description: name, options, steps and their policies.
    fn description() -> SagaDescription
    where
        Self: Sized,
    {
        crate::executor::table::<Self>().description()
    }

    /// The saga as a Mermaid flowchart (see [`SagaDescription::mermaid`]).
    fn mermaid() -> String
    where
        Self: Sized,
    {
        Self::description().mermaid()
    }
}

/// The types of a saga: its context, its dependencies and how its steps are named. Every
/// [`Saga`] is one; so is [`BuiltSaga`](crate::BuiltSaga), the sagas of definitions assembled at
/// run time. The typed client ([`SagaClient`](crate::SagaClient)), outcomes and step results are
/// generic over it, so code written for one serves both:
///
/// ```
/// use saga_runtime::{SagaClient, SagaError, SagaId, SagaKind, StepEnum};
///
/// /// Saga `id`'s status with its step by name, whichever way its definition was made.
/// async fn status<S: SagaKind>(sagas: &SagaClient<S>, id: SagaId) -> Result<String, SagaError> {
///     let status = sagas.status(id).await?;
///     Ok(status.map(|step| step.name()).to_string())
/// }
/// ```
pub trait SagaKind: Send + Sync + 'static {
    /// The persisted context.
    type Context: SagaContext;
    /// The shared, non-persisted dependencies handed to steps.
    type Deps: Send + Sync + 'static;
    /// How a step is named in statuses and outcomes.
    type Step: StepEnum;

    /// The dependencies a run gets when none are given (see [`Saga::default_deps`]).
    #[doc(hidden)]
    fn default_deps() -> Option<std::sync::Arc<Self::Deps>> {
        None
    }
}

impl<S: Saga> SagaKind for S {
    type Context = S::Context;
    type Deps = S::Deps;
    type Step = S::Step;

    fn default_deps() -> Option<std::sync::Arc<Self::Deps>> {
        <S as Saga>::default_deps()
    }
}

/// A saga's static description, for events, persistence, documentation and diagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaDescription {
    /// The saga's type name.
    pub name: &'static str,
    /// Saga-wide options.
    pub options: SagaOptions,
    /// Every step in order.
    pub steps: Vec<StepDescription>,
    /// The parallel groups, as ranges of positions in `steps`, in order.
    pub groups: Vec<Range<usize>>,
}

impl SagaDescription {
    /// The step names in order.
    pub fn step_names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name).collect()
    }

    /// The steps that run together with step `step`: its parallel group, or the step alone.
    pub fn stage(&self, step: usize) -> Range<usize> {
        crate::machine::stage_of(&self.groups, step)
    }
}

impl fmt::Display for SagaDescription {
    /// One line per step: its name, then every key that differs from the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let defaults = crate::StepPolicy::DEFAULT;
        writeln!(f, "{}", self.name)?;
        for (i, step) in self.steps.iter().enumerate() {
            let p = &step.policy;
            // A group's members are listed under `parallel:`, indented.
            let stage = self.stage(i);
            let indent = match stage.len() > 1 {
                true if stage.start == i => {
                    writeln!(f, "  parallel:")?;
                    "    "
                }
                true => "    ",
                false => "  ",
            };
            write!(f, "{indent}{}. {}", i + 1, step.name)?;
            if let Some(remote) = step.remote {
                write!(f, ", remote = {}.{}", remote.service, remote.action)?;
            }
            match (p.undo, step.compensation) {
                (crate::Undo::Compensate, Some(c)) => write!(f, ", compensate = {c}")?,
                (crate::Undo::Pivot, _) => write!(f, ", pivot")?,
                (crate::Undo::NothingToUndo, _) => write!(f, ", nothing_to_undo")?,
                _ => {}
            }
            if let Some(t) = p.timeout {
                write!(f, ", timeout = {t:?}")?;
            }
            if p.retries != defaults.retries {
                write!(f, ", retries = {}", p.retries)?;
            }
            if p.backoff != defaults.backoff {
                write!(f, ", backoff = {:?}", p.backoff)?;
            }
            if let Some(fb) = step.fallback {
                write!(f, ", fallback = {fb}")?;
            }
            if p.compensation_retries != defaults.compensation_retries {
                match p.compensation_retries {
                    crate::CompensationRetries::Forever => {
                        write!(f, ", compensation_retries = forever")?
                    }
                    crate::CompensationRetries::Limited(n) => {
                        write!(f, ", compensation_retries = {n}")?
                    }
                }
            }
            if p.compensate_on_timeout {
                write!(f, ", compensate_on_timeout")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
