//! Sagas assembled at run time: a builder that produces the same definition `saga!` generates,
//! for sagas whose steps or group members are only known when they start (one reservation per
//! item of a cart). They run on the same engine and store, with the same guarantees.
//!
//! The steps are the same `#[saga_step]` functions `saga!` lists. A step may run more than once
//! in one definition as numbered *instances* ([`SagaBuilder::instance`]): instance `i` of
//! `reserve_item` is named `reserve_item[i]` (its events, idempotency key and recorded output are
//! its own) and reads which one it is from [`StepCx::instance`](crate::StepCx::instance).
//!
//! What `saga!` refuses at compile time, [`SagaBuilder::build`] refuses with a [`BuildError`]:
//! no steps, a step listed twice, a step before the last that says nothing about rollback, an
//! empty group, a step taking an output no earlier step produces. What is a property of a step's
//! type (a group member must take `&Ctx` and not be a pivot) is still a compile error, at the
//! builder call.
//!
//! # Recovery
//!
//! A saga records its definition's name, its steps and its groups. A worker resumes sagas of a
//! built definition when it registered the definition's name with a function that builds the
//! definition again from the saga's context
//! ([`EngineBuilder::register_definition`](crate::EngineBuilder::register_definition)); a saga
//! whose rebuilt steps or groups differ from the recorded ones is parked with the difference as
//! its reason. To change a definition in a way sagas in flight cannot follow, give it a new
//! name (`"CartSaga.v2"`) and keep registering the old one until its sagas have ended.

mod check;
mod intern;

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::time::Duration;

pub use check::BuildError;
pub(crate) use intern::intern;

use crate::machine::StepTable;
use crate::step::{SagaStep, StepDef};
use crate::{Engine, SagaClient, SagaContext, SagaDescription, SagaKind, SagaOptions, StepEnum};

/// A saga definition assembled at run time by [`SagaDefinition::builder`]: what `saga!`
/// generates, as a value. Cheap to copy; equal definitions built twice are one.
///
/// ```
/// use saga_runtime::{saga_step, Engine, SagaDefinition, StepCx, StepError};
///
/// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// struct Cart { items: Vec<String>, reserved: Vec<String> }
///
/// #[saga_step(compensate = release)]
/// async fn reserve(cart: &Cart, cx: &StepCx) -> Result<String, StepError> {
///     let item = &cart.items[cx.instance().unwrap_or(0)];
///     Ok(format!("reservation of {item}"))
/// }
///
/// async fn release(cart: &Cart, cx: &StepCx, reservation: String) -> Result<(), StepError> {
///     Ok(()) // cancels `reservation`
/// }
///
/// #[saga_step]
/// async fn confirm(cart: &mut Cart) -> Result<(), StepError> {
///     cart.reserved = cart.items.clone();
///     Ok(())
/// }
///
/// /// One reservation per item, all at once, then the confirmation.
/// fn cart_saga(cart: &Cart) -> Result<SagaDefinition<Cart, ()>, saga_runtime::BuildError> {
///     SagaDefinition::builder("CartSaga")
///         .parallel(|group| {
///             for item in 0..cart.items.len() {
///                 group.instance::<reserve>(item);
///             }
///         })
///         .step::<confirm>()
///         .build()
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cart = Cart { items: vec!["book".into(), "lamp".into()], ..Cart::default() };
/// let saga = cart_saga(&cart)?;
/// assert_eq!(saga.description().step_names(), ["reserve[0]", "reserve[1]", "confirm"]);
/// let outcome = saga.on(&Engine::in_memory()).run(cart).await?;
/// assert!(outcome.is_completed());
/// assert_eq!(outcome.ctx().reserved, ["book", "lamp"]);
/// # Ok(()) }
/// ```
pub struct SagaDefinition<C: 'static, D: 'static> {
    table: &'static StepTable<C, D>,
}

impl<C, D> Clone for SagaDefinition<C, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, D> Copy for SagaDefinition<C, D> {}

impl<C, D> fmt::Debug for SagaDefinition<C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaDefinition")
            .field("name", &self.table.name)
            .field("steps", &self.table.step_names())
            .field("groups", &self.table.groups)
            .finish_non_exhaustive()
    }
}

impl<C: SagaContext, D: Send + Sync + 'static> SagaDefinition<C, D> {
    /// Starts a definition named `name`: the saga type name it is recorded under, which
    /// recovery finds it by.
    pub fn builder(name: impl Into<String>) -> SagaBuilder<C, D> {
        SagaBuilder {
            name: name.into(),
            options: SagaOptions::DEFAULT,
            steps: Vec::new(),
            groups: Vec::new(),
            empty_groups: Vec::new(),
        }
    }

    /// The definition's name.
    pub fn name(&self) -> &'static str {
        self.table.name
    }

    /// The static description: name, options, steps and their policies, groups (as
    /// [`Saga::description`](crate::Saga::description) gives for a `saga!`).
    pub fn description(&self) -> SagaDescription {
        self.table.description()
    }

    /// The saga as a Mermaid flowchart (see [`SagaDescription::mermaid`]).
    pub fn mermaid(&self) -> String {
        self.description().mermaid()
    }

    /// The typed client of this definition's sagas on `engine`: `run`, `start`, `status`,
    /// `wait`... as `OrderSaga::on(&engine)` gives for a `saga!`.
    pub fn on(&self, engine: &Engine) -> SagaClient<BuiltSaga<C, D>> {
        SagaClient::with_table(engine, self.table)
    }

    pub(crate) fn table(&self) -> &'static StepTable<C, D> {
        self.table
    }
}

/// Assembles a [`SagaDefinition`] (see there for a whole saga): steps in order, groups, options.
///
/// ```
/// use std::time::Duration;
/// use saga_runtime::{saga_step, SagaDefinition, StepError};
///
/// #[saga_step]
/// async fn notify(ctx: &mut u32) -> Result<(), StepError> { Ok(()) }
///
/// let saga = SagaDefinition::<u32, ()>::builder("Notify")
///     .step::<notify>()
///     .deadline(Duration::from_secs(30))
///     .best_effort_rollback()
///     .build()?;
/// assert_eq!(saga.description().options.deadline, Some(Duration::from_secs(30)));
/// # Ok::<(), saga_runtime::BuildError>(())
/// ```
#[must_use]
pub struct SagaBuilder<C: 'static, D: 'static> {
    name: String,
    options: SagaOptions,
    steps: Vec<StepDef<C, D>>,
    /// The parallel groups, as ranges of positions in `steps`.
    groups: Vec<Range<usize>>,
    /// Where a group with no members was given, as positions in `steps`.
    empty_groups: Vec<usize>,
}

impl<C, D> fmt::Debug for SagaBuilder<C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaBuilder")
            .field("name", &self.name)
            .field("steps", &self.steps)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl<C: SagaContext, D: Send + Sync + 'static> SagaBuilder<C, D> {
    /// Appends step `S` (a `#[saga_step]`), which runs after the steps before it.
    pub fn step<S: SagaStep<C, D>>(mut self) -> Self {
        self.steps.push(StepDef::of::<S>());
        self
    }

    /// Appends instance `instance` of step `S`: the step named `"{S}[{instance}]"`, which reads
    /// `instance` from [`StepCx::instance`](crate::StepCx::instance).
    pub fn instance<S: SagaStep<C, D>>(mut self, instance: usize) -> Self {
        self.steps
            .push(StepDef::of::<S>().instance_of(Some(instance)));
        self
    }

    /// Appends a parallel group: the members `members` adds run at once (as
    /// `parallel(a, b, c)` in `saga!`, under the same rule: each takes the context by `&Ctx`).
    pub fn parallel(mut self, members: impl FnOnce(&mut GroupBuilder<C, D>)) -> Self {
        let mut group = GroupBuilder {
            steps: std::mem::take(&mut self.steps),
        };
        let start = group.steps.len();
        members(&mut group);
        self.steps = group.steps;
        match self.steps.len() - start {
            0 => self.empty_groups.push(start),
            // A group of one too, as `saga!` records `parallel(a)`.
            _ => self.groups.push(start..self.steps.len()),
        }
        self
    }

    /// The whole saga's deadline (as `#[saga(deadline = "30s")]`).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.options.deadline = Some(deadline);
        self
    }

    /// When a compensation fails for good, go on compensating the older steps (as
    /// `#[saga(best_effort_rollback)]`).
    pub fn best_effort_rollback(mut self) -> Self {
        self.options.best_effort_rollback = true;
        self
    }

    /// The definition, or what `saga!` would have refused about it.
    pub fn build(self) -> Result<SagaDefinition<C, D>, BuildError> {
        check::check(&self.name, &self.steps, &self.groups, &self.empty_groups)?;
        if self.options.deadline == Some(Duration::ZERO) {
            return Err(BuildError::ZeroDeadline { saga: self.name });
        }
        let table = intern::table(intern(self.name), self.options, self.steps, self.groups);
        Ok(SagaDefinition { table })
    }
}

/// The members of one parallel group, added by the closure given to
/// [`SagaBuilder::parallel`]. Each must take the context by `&Ctx` and not be a pivot: a compile
/// error at the call otherwise.
pub struct GroupBuilder<C: 'static, D: 'static> {
    /// Every step of the definition so far: the group's members are the last ones.
    steps: Vec<StepDef<C, D>>,
}

impl<C, D> fmt::Debug for GroupBuilder<C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBuilder").finish_non_exhaustive()
    }
}

impl<C: SagaContext, D: Send + Sync + 'static> GroupBuilder<C, D> {
    /// Adds step `S` to the group.
    pub fn step<S>(&mut self) -> &mut Self
    where
        S: SagaStep<C, D> + crate::__private::ReadsContextOnly + crate::__private::NotPivot,
    {
        self.steps.push(StepDef::of::<S>());
        self
    }

    /// Adds instance `instance` of step `S` to the group (see [`SagaBuilder::instance`]).
    pub fn instance<S>(&mut self, instance: usize) -> &mut Self
    where
        S: SagaStep<C, D> + crate::__private::ReadsContextOnly + crate::__private::NotPivot,
    {
        self.steps
            .push(StepDef::of::<S>().instance_of(Some(instance)));
        self
    }
}

/// The saga type of the sagas of built definitions over context `C` and dependencies `D`: what
/// [`SagaClient`], outcomes and step results are typed by.
pub struct BuiltSaga<C, D>(PhantomData<fn() -> (C, D)>);

impl<C: SagaContext, D: Send + Sync + 'static> SagaKind for BuiltSaga<C, D> {
    type Context = C;
    type Deps = D;
    type Step = BuiltStep;
}

/// A step of a built definition, in statuses and outcomes: its position and name.
///
/// ```
/// use saga_runtime::{BuiltStep, StepEnum};
///
/// let step = BuiltStep::at(2, "reserve[1]").unwrap();
/// assert_eq!((step.index(), step.name(), step.to_string()), (2, "reserve[1]", "reserve[1]".into()));
/// ```
///
/// Unlike a
/// generated step enum, the type does not list its values: [`StepEnum::ALL`] is empty and
/// [`StepEnum::from_index`] is `None` (a built definition's steps are its own, listed by
/// [`SagaDefinition::description`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuiltStep {
    index: usize,
    name: &'static str,
}

impl BuiltStep {
    /// The step's position in its definition, from 0.
    pub fn index(self) -> usize {
        self.index
    }

    /// The step's name (`"reserve[2]"` for an instance).
    pub fn name(self) -> &'static str {
        self.name
    }
}

impl fmt::Display for BuiltStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl StepEnum for BuiltStep {
    /// Empty: a built definition's steps are its own, not its type's
    /// ([`SagaDefinition::description`] lists them).
    const ALL: &'static [Self] = &[];

    fn index(self) -> usize {
        self.index
    }

    fn name(self) -> &'static str {
        self.name
    }

    fn at(index: usize, name: &'static str) -> Option<Self> {
        Some(BuiltStep { index, name })
    }
}
