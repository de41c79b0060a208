//! Steps: the handle a step receives, its declared policy, and the trait `#[saga_step]`
//! implements.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{SagaId, StepError};

/// The future of one step, compensation or fallback attempt: on success, the step's output as it
/// is recorded (`None` for a step returning `()`, and for compensations).
pub type StepFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<crate::OutputValue>, StepError>> + Send + 'a>>;

/// A step action or compensation as a plain function pointer, as the executor calls it.
pub type StepFn<C, D> = for<'a> fn(&'a mut C, &'a StepCx<D>) -> StepFuture<'a>;

/// What a step is doing when its handle is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The step's action (or a fallback's action standing in for it).
    Action,
    /// The step's compensation.
    Compensation,
}

impl Phase {
    /// The name for this phase among two.
    pub(crate) fn point(self, action: &'static str, compensation: &'static str) -> &'static str {
        match self {
            Phase::Action => action,
            Phase::Compensation => compensation,
        }
    }
}

/// A step's recorded output, by the step's name.
pub(crate) type NamedOutput = (&'static str, crate::OutputValue);

/// The step handle: who is running, which attempt this is, and the saga's shared,
/// non-persisted dependencies (clients, pools), like axum's `State`.
///
/// A step takes it as its optional second parameter:
///
/// ```
/// # use saga_runtime::{StepCx, StepError};
/// # struct Ctx; struct Services;
/// async fn charge(ctx: &mut Ctx, cx: &StepCx<Services>) -> Result<(), StepError> {
///     let key = cx.idempotency_key(); // "{saga_id}:charge", stable across attempts and restarts
///     # let _ = key;
///     Ok(())
/// }
/// ```
pub struct StepCx<D = ()> {
    saga_id: SagaId,
    saga_type: &'static str,
    step: &'static str,
    attempt: u32,
    phase: Phase,
    token: u64,
    deps: Arc<D>,
    /// What few attempts have, boxed: the handle is kept in the future of every attempt in
    /// flight, and most have none of it.
    extras: Option<Box<Extras>>,
}

/// The parts of a step's handle that most attempts do not have.
#[derive(Default)]
struct Extras {
    /// For a compensation: the output its step recorded.
    recorded: Option<crate::OutputValue>,
    /// For an action that takes earlier steps' outputs: those outputs, by step name.
    inputs: Option<Box<[NamedOutput]>>,
    /// Which instance of its step this is, in a built definition.
    instance: Option<usize>,
}

impl<D> StepCx<D> {
    pub(crate) fn new(
        saga_id: SagaId,
        saga_type: &'static str,
        step: &'static str,
        attempt: u32,
        phase: Phase,
        token: u64,
        deps: Arc<D>,
    ) -> Self {
        StepCx {
            saga_id,
            saga_type,
            step,
            attempt,
            phase,
            token,
            deps,
            extras: None,
        }
    }

    /// Its extras, made when one is first set.
    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// The same handle, for instance `instance` of its step.
    pub(crate) fn with_instance(mut self, instance: Option<usize>) -> Self {
        if instance.is_some() {
            self.extras().instance = instance;
        }
        self
    }

    /// The same handle, carrying the outputs of the earlier steps the step takes.
    pub(crate) fn with_inputs(mut self, inputs: Box<[NamedOutput]>) -> Self {
        if !inputs.is_empty() {
            self.extras().inputs = Some(inputs);
        }
        self
    }

    /// The output of the earlier step named `step`, if the attempt was given it.
    pub(crate) fn input(&self, step: &str) -> Option<&crate::OutputValue> {
        self.extras
            .as_ref()?
            .inputs
            .as_deref()?
            .iter()
            .find(|(name, _)| *name == step)
            .map(|(_, value)| value)
    }

    /// The same handle, carrying the output the step recorded (for its compensation).
    pub(crate) fn with_recorded(mut self, recorded: Option<&crate::OutputValue>) -> Self {
        if let Some(recorded) = recorded {
            self.extras().recorded = Some(recorded.clone());
        }
        self
    }

    /// For a compensation, the output its step recorded (`None` when it recorded none).
    #[doc(hidden)]
    pub fn recorded_output(&self) -> Option<&crate::OutputValue> {
        self.extras.as_ref()?.recorded.as_ref()
    }

    /// The fencing token of this worker's lease on the saga: it grows with every worker that
    /// takes the saga over. Pass it to the services a step calls, so that they can refuse a
    /// worker that lost the saga (a request carrying a token lower than one already seen for
    /// this saga comes from a stale worker):
    ///
    /// ```
    /// # use std::collections::HashMap;
    /// # use std::sync::Mutex;
    /// # use saga_runtime::{StepCx, StepError};
    /// /// A downstream service that keeps the highest token seen per saga.
    /// struct Inventory { fences: Mutex<HashMap<String, u64>> }
    ///
    /// impl Inventory {
    ///     fn reserve(&self, saga: &str, token: u64) -> Result<(), StepError> {
    ///         let mut fences = self.fences.lock().unwrap();
    ///         let seen = fences.entry(saga.to_owned()).or_insert(0);
    ///         if token < *seen {
    ///             return Err(StepError::permanent("stale worker: a newer one holds this saga"));
    ///         }
    ///         *seen = token;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// async fn reserve(ctx: &mut (), cx: &StepCx<Inventory>) -> Result<(), StepError> {
    ///     cx.deps().reserve(&cx.saga_id().to_string(), cx.fencing_token())
    /// }
    /// ```
    pub fn fencing_token(&self) -> u64 {
        self.token
    }

    /// The id of the running saga.
    pub fn saga_id(&self) -> SagaId {
        self.saga_id
    }

    /// The saga's type name, e.g. `"OrderSaga"`.
    pub fn saga_type(&self) -> &'static str {
        self.saga_type
    }

    /// The step's name: its function's name.
    pub fn step(&self) -> &'static str {
        self.step
    }

    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether this is the step's action or its compensation.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A key that is the same on every attempt of this step in this saga, and different for its
    /// compensation: `"{saga_id}:{step}"` for the action, `"{saga_id}:{step}:compensate"` for the
    /// compensation. Pass it to the remote side so that a step run again (after a retry or a
    /// crash) takes effect once.
    pub fn idempotency_key(&self) -> String {
        match self.phase {
            Phase::Action => format!("{}:{}", self.saga_id, self.step),
            Phase::Compensation => format!("{}:{}:compensate", self.saga_id, self.step),
        }
    }

    /// Which instance of its step this attempt runs, for a step a built definition runs more
    /// than once ([`SagaBuilder::instance`](crate::SagaBuilder::instance)): the number it was
    /// added with, which says which part of the work is its own (the item of a cart it
    /// reserves). `None` for a step that runs once.
    ///
    /// ```
    /// # use saga_runtime::{StepCx, StepError};
    /// # #[derive(Clone)] struct Cart { items: Vec<String> }
    /// async fn reserve(cart: &Cart, cx: &StepCx) -> Result<String, StepError> {
    ///     let item = cx
    ///         .instance()
    ///         .and_then(|i| cart.items.get(i))
    ///         .ok_or_else(|| StepError::permanent("no item for this reservation"))?;
    ///     Ok(format!("reserved {item}"))
    /// }
    /// ```
    pub fn instance(&self) -> Option<usize> {
        self.extras.as_ref()?.instance
    }

    /// The saga's shared dependencies.
    pub fn deps(&self) -> &D {
        &self.deps
    }
}

impl<D> fmt::Debug for StepCx<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepCx")
            .field("saga_id", &self.saga_id)
            .field("saga_type", &self.saga_type)
            .field("step", &self.step)
            .field("attempt", &self.attempt)
            .field("phase", &self.phase)
            .field("fencing_token", &self.token)
            .finish_non_exhaustive()
    }
}

/// How a step declares what happens to it when the saga rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Undo {
    /// `compensate = path`: the compensation runs during rollback.
    Compensate,
    /// `pivot`: the point of no return; once it completed, later failures are not rolled back.
    Pivot,
    /// `nothing_to_undo`: a read-only check or a notification that cannot be unsent.
    NothingToUndo,
    /// Nothing declared; only allowed for the last step of a saga.
    Unspecified,
}

/// How often a failing compensation is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompensationRetries {
    /// `compensation_retries = N`: N + 1 attempts.
    Limited(u32),
    /// `compensation_retries = "forever"`: until it succeeds (still with backoff).
    Forever,
}

/// The policy a step declared in `#[saga_step(...)]`, with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepPolicy {
    /// `timeout`: limit of each attempt (action, fallback and compensation). `None`: no limit.
    pub timeout: Option<Duration>,
    /// `retries`: attempts after the first. Default 0.
    pub retries: u32,
    /// `backoff`: base of the exponential backoff between attempts. Default 100 ms.
    pub backoff: Duration,
    /// What rollback does with this step.
    pub undo: Undo,
    /// `compensation_retries`: default 4 (5 attempts).
    pub compensation_retries: CompensationRetries,
    /// `compensate_on_timeout`: when the step fails for good by timing out, run its own
    /// compensation too, since a timed-out action may have had effects.
    pub compensate_on_timeout: bool,
}

impl StepPolicy {
    /// The defaults: no timeout, no retries, 100 ms backoff base, undo unspecified, 4
    /// compensation retries.
    pub const DEFAULT: StepPolicy = StepPolicy {
        timeout: None,
        retries: 0,
        backoff: Duration::from_millis(100),
        undo: Undo::Unspecified,
        compensation_retries: CompensationRetries::Limited(4),
        compensate_on_timeout: false,
    };
}

impl Default for StepPolicy {
    fn default() -> Self {
        StepPolicy::DEFAULT
    }
}

/// The static description of one step: its name, policy, and the names of its compensation and
/// fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepDescription {
    /// The step's name (its function's name).
    pub name: &'static str,
    /// Its declared policy.
    pub policy: StepPolicy,
    /// The compensation function's name.
    pub compensation: Option<&'static str>,
    /// The fallback step's name.
    pub fallback: Option<&'static str>,
    /// The steps whose outputs it takes, by name.
    pub inputs: &'static [&'static str],
    /// Its output type as written (`Some("PaymentProcessed")`), unless it returns `()`.
    pub output: Option<&'static str>,
    /// For a `remote` step, the participant service and action that carry it out.
    pub remote: Option<RemoteTarget>,
}

/// The participant service and action a `remote` step's command goes to (see
/// [`crate::remote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteTarget {
    /// The service.
    pub service: &'static str,
    /// Its action.
    pub action: &'static str,
}

/// Implemented by `#[saga_step]` for the hidden type that shares the step function's name.
///
/// Not meant to be implemented by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a saga step over context `{C}` and dependencies `{D}`",
    label = "not a `#[saga_step]` for this saga",
    note = "every step of a saga is an `async fn` marked `#[saga_step]` taking `&mut {C}` (or `&{C}`) and, optionally, `&StepCx<{D}>`"
)]
pub trait SagaStep<C, D>: crate::NamedStep {
    /// The step's static description.
    const DESCRIPTION: StepDescription;

    /// How to build the fallback's table, when the step has a `fallback`.
    const FALLBACK: Option<fn() -> StepDef<C, D>>;

    /// Runs one attempt of the action.
    fn action<'a>(ctx: &'a mut C, cx: &'a StepCx<D>) -> StepFuture<'a>;

    /// Runs one attempt of the compensation. Only called when `DESCRIPTION.policy.undo` is
    /// [`Undo::Compensate`].
    fn compensate<'a>(ctx: &'a mut C, cx: &'a StepCx<D>) -> StepFuture<'a>;
}

/// A step as the executor sees it: its description and function pointers.
pub struct StepDef<C, D> {
    /// Name and policy.
    pub description: StepDescription,
    /// The action.
    pub action: StepFn<C, D>,
    /// The compensation, when declared.
    pub compensate: Option<StepFn<C, D>>,
    /// The fallback step, when declared.
    pub fallback: Option<fn() -> StepDef<C, D>>,
    /// Which instance of the step this is, for a step a built definition runs more than once
    /// (see [`SagaBuilder::instance`](crate::SagaBuilder::instance)); `None` otherwise.
    pub instance: Option<usize>,
}

impl<C, D> StepDef<C, D> {
    /// The table of a `#[saga_step]`.
    pub const fn of<S: SagaStep<C, D>>() -> Self {
        let compensate: Option<StepFn<C, D>> = match S::DESCRIPTION.policy.undo {
            Undo::Compensate => Some(S::compensate),
            _ => None,
        };
        StepDef {
            description: S::DESCRIPTION,
            action: S::action,
            compensate,
            fallback: S::FALLBACK,
            instance: None,
        }
    }

    /// Instance `instance` of this step (itself when `None`): named `"{name}[{instance}]"`, so
    /// that its events, idempotency keys and recorded output are its own.
    pub fn instance_of(self, instance: Option<usize>) -> Self {
        match instance {
            None => self,
            Some(i) => {
                let mut def = self;
                def.description.name = crate::built::intern(format!("{}[{i}]", self.name()));
                def.instance = Some(i);
                def
            }
        }
    }

    /// The step's name.
    pub fn name(&self) -> &'static str {
        self.description.name
    }

    /// The name of the step this is an instance of (its own name when it is not one).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn base_name(&self) -> &'static str {
        let name = self.name();
        match self.instance {
            Some(_) => name.rsplit_once('[').map_or(name, |(base, _)| base),
            None => name,
        }
    }

    /// The step's policy.
    pub fn policy(&self) -> &StepPolicy {
        &self.description.policy
    }
}

impl<C, D> Clone for StepDef<C, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, D> Copy for StepDef<C, D> {}

impl<C, D> fmt::Debug for StepDef<C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.description, f)
    }
}
