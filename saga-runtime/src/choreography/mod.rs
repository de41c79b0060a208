//! Choreographed sagas: services react to each other's typed events over the
//! [bus](crate::bus), with no coordinator, and undo their work in reverse order when one of them
//! fails for good.
//!
//! An **event** is a serializable type shared by the services, named by [`Event::NAME`]. A
//! **handler** is an `async fn` marked `#[saga_handler]` that takes one event and returns the
//! next (`on X, do Y, emit Z`), declaring how it is undone: `compensate = f` (given the event it
//! took and the one it emitted) or `nothing_to_undo`. A **flow** lists its handlers by service,
//! between the event that starts it and the one that ends it:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use saga_runtime::bus::MemoryBus;
//! use saga_runtime::choreography::{Event, HandlerCx};
//! use saga_runtime::{choreography, saga_handler, StepError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct OrderPlaced { order: String }
//! impl Event for OrderPlaced { const NAME: &'static str = "order.placed"; }
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct StockReserved { order: String }
//! impl Event for StockReserved { const NAME: &'static str = "stock.reserved"; }
//!
//! #[saga_handler(compensate = release)]
//! async fn reserve(event: OrderPlaced, _cx: &HandlerCx<()>) -> Result<StockReserved, StepError> {
//!     Ok(StockReserved { order: event.order })
//! }
//!
//! async fn release(_event: OrderPlaced, _reserved: StockReserved, _cx: &HandlerCx<()>) -> Result<(), StepError> {
//!     Ok(())
//! }
//!
//! choreography! {
//!     /// Orders: stock is reserved, and that is all.
//!     OrderFlow(OrderPlaced => StockReserved) {
//!         inventory: reserve,
//!     }
//! }
//!
//! let bus = Arc::new(MemoryBus::new());
//! let inventory = tokio::spawn(OrderFlow::inventory(bus.clone(), ()).run());
//! let id = OrderFlow::start(&*bus, OrderPlaced { order: "o-1".into() }).await?;
//! # inventory.abort();
//! # Ok(()) }
//! ```
//!
//! # How it travels
//!
//! Every message of a flow is a [`FlowEnvelope`] on a subject under `choreo.{flow}`: the saga's
//! id, the message, and the **trail**: the work done so far that can be undone, in the order it
//! was done, each with the event its handler took and the one it emitted. A handler's event comes
//! on `choreo.{flow}.event.{name}` to one instance of the service that handles it; what the
//! handler's run decides is **one** message, under one id (`{saga}:{handler}:outcome`) whichever
//! way it went: its event, with the trail grown by its work, or, when it failed for good (a
//! permanent error, or a transient one past its `retries`), the first step of the rollback.
//! Then the delivery is acknowledged; an instance that dies in between leaves the event to
//! another, which runs the handler again under the same idempotency key (`{saga}:{handler}`), and
//! whatever that run decides, the bus keeps the first decision published and drops the other.
//! The rollback asks the service of the trail's last work to undo it
//! (`choreo.{flow}.undo.{service}.{handler}`, saying which handler failed and why); what its
//! compensation decides is again one message (`{saga}:{handler}:undo`): the next undo (saying
//! which work was undone), `compensated` when none is left, or `stuck` when the compensation
//! failed for good (the rollback stops there). So the services that did work undo it in reverse
//! order, each compensation run under one key (`{saga}:{handler}:compensate`) until it succeeds
//! or fails for good. A [`Tracker`] follows all of it into a [store](crate::store), so that every
//! choreographed saga has a status and a history like an orchestrated one.
//!
//! A flow is a chain: each event is taken by at most one handler and emitted by at most one, the
//! start by one and the end by one, and nothing emits the start or takes the end
//! (`choreography!` checks it).

mod envelope;
mod service;
pub(crate) mod support;
mod tracker;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use envelope::{After, Done, FlowEnvelope, FlowMessage};
pub use service::FlowService;
pub use tracker::{status, Tracker};

use crate::bus::{Bus, BusError, Outgoing};
use crate::{SagaId, StepError};

/// An event of a choreographed saga, shared by the services that emit and take it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event of a choreographed saga",
    label = "a handler takes and returns events: implement `saga_runtime::choreography::Event`",
    note = "`Event` names the event (`const NAME: &'static str = \"order.placed\";`)"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event's name: dot-separated tokens of letters, digits, `-` and `_`
    /// (`"order.placed"`).
    const NAME: &'static str;
}

/// A handler of a choreographed saga, as `#[saga_handler]` declares it on the type that shares
/// the handler function's name. Not meant to be implemented by hand.
pub trait Handler: Send + Sync + 'static {
    /// The handler's name (its function's).
    const NAME: &'static str;
    /// Whether it has a compensation (`false`: it declared nothing to undo, or nothing at all,
    /// which a flow refuses).
    const UNDO: bool;
    /// How it is retried and timed.
    const POLICY: HandlerPolicy;
    /// The service's dependencies it takes.
    type Deps: Send + Sync + 'static;
    /// The event it takes.
    type On: Event;
    /// The event it emits.
    type Emits: Event;

    /// Runs the handler once.
    fn handle(event: Self::On, cx: &HandlerCx<Self::Deps>) -> HandlerFuture<'_, Self::Emits>;

    /// Runs its compensation once, given the event it took and the one it emitted (never
    /// called for a handler with nothing to undo).
    fn compensate(
        event: Self::On,
        emitted: Self::Emits,
        cx: &HandlerCx<Self::Deps>,
    ) -> HandlerFuture<'_, ()>;
}

/// The future of one run of a handler or its compensation.
pub type HandlerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StepError>> + Send + 'a>>;

/// How a handler is retried and timed (`#[saga_handler(retries = .., backoff = .., timeout = ..)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerPolicy {
    /// How many times a transient failure is retried (default 3).
    pub retries: u32,
    /// How long before the event comes again after a transient failure (default 100 ms).
    pub backoff: Duration,
    /// How long one run may take (default none).
    pub timeout: Option<Duration>,
}

impl HandlerPolicy {
    /// The defaults: 3 retries 100 ms apart, no timeout.
    pub const DEFAULT: HandlerPolicy = HandlerPolicy {
        retries: 3,
        backoff: Duration::from_millis(100),
        timeout: None,
    };

    /// A policy of `retries` retries `backoff` apart, each run within `timeout`.
    pub const fn new(retries: u32, backoff: Duration, timeout: Option<Duration>) -> Self {
        HandlerPolicy {
            retries,
            backoff,
            timeout,
        }
    }
}

/// One handler of a flow, as the flow lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerInfo {
    /// The service that runs it.
    pub service: &'static str,
    /// The handler's name.
    pub handler: &'static str,
    /// The event it takes.
    pub on: &'static str,
    /// The event it emits.
    pub emits: &'static str,
    /// Whether it has a compensation (else it declared nothing to undo).
    pub undo: bool,
}

impl HandlerInfo {
    /// Handler `H` of `service`.
    pub const fn of<H: Handler>(service: &'static str) -> Self {
        HandlerInfo {
            service,
            handler: H::NAME,
            on: <H::On as Event>::NAME,
            emits: <H::Emits as Event>::NAME,
            undo: H::UNDO,
        }
    }
}

/// A choreographed saga's flow, as `choreography!` declares it. Not meant to be implemented by
/// hand.
pub trait Choreography: Send + Sync + 'static {
    /// The flow's name.
    const NAME: &'static str;
    /// The event that starts a saga of it.
    type Start: Event;
    /// The event that ends one.
    type End: Event;
    /// Its handlers, by service, in the order the flow lists them (the steps its tracked
    /// sagas show).
    const HANDLERS: &'static [HandlerInfo];
}

/// Starts a saga of flow `F`: publishes its first event, under a new saga id, which it returns.
pub async fn start<F: Choreography>(bus: &dyn Bus, event: F::Start) -> Result<SagaId, BusError> {
    let id = SagaId::new();
    start_with_id::<F>(bus, id, event).await?;
    Ok(id)
}

/// Starts saga `id` of flow `F`: publishes its first event. Starting it again with the same id
/// publishes the same message, which the bus drops.
pub async fn start_with_id<F: Choreography>(
    bus: &dyn Bus,
    id: SagaId,
    event: F::Start,
) -> Result<(), BusError> {
    let payload = serde_json::to_value(event).map_err(|e| {
        BusError::new(
            crate::bus::BusErrorKind::Invalid,
            format!("the event cannot be written as JSON: {e}"),
        )
    })?;
    let envelope = FlowEnvelope {
        saga_id: id,
        flow: F::NAME.to_owned(),
        message: FlowMessage::Event {
            name: <F::Start as Event>::NAME.to_owned(),
            payload,
            by: None,
        },
        trail: Vec::new(),
    };
    publish(bus, &envelope).await
}

/// Publishes `envelope` on its subject, under its message id.
async fn publish(bus: &dyn Bus, envelope: &FlowEnvelope) -> Result<(), BusError> {
    let payload = serde_json::to_vec(envelope).map_err(|e| {
        BusError::new(
            crate::bus::BusErrorKind::Invalid,
            format!("the message cannot be written as JSON: {e}"),
        )
    })?;
    let message = Outgoing::new(envelope.subject(), envelope.message_id(), payload);
    bus.publish(message).await.map(drop)
}

/// What a handler of a choreographed saga (or its compensation) runs with.
pub struct HandlerCx<D> {
    saga_id: SagaId,
    flow: String,
    handler: &'static str,
    compensation: bool,
    attempt: u32,
    deps: Arc<D>,
}

impl<D> HandlerCx<D> {
    /// The saga.
    pub fn saga_id(&self) -> SagaId {
        self.saga_id
    }

    /// Its flow's name.
    pub fn flow(&self) -> &str {
        &self.flow
    }

    /// The handler.
    pub fn handler(&self) -> &str {
        self.handler
    }

    /// Whether this is the handler's compensation.
    pub fn is_compensation(&self) -> bool {
        self.compensation
    }

    /// Which delivery of the event this run is, from 1 (a retry, or a run again after an
    /// instance died, is a later one).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The same on every run of this handler for this saga, different for its compensation:
    /// `{saga}:{handler}`, `{saga}:{handler}:compensate`. Act through it so that a run again
    /// takes effect once.
    pub fn idempotency_key(&self) -> String {
        match self.compensation {
            false => format!("{}:{}", self.saga_id, self.handler),
            true => format!("{}:{}:compensate", self.saga_id, self.handler),
        }
    }

    /// The service's dependencies.
    pub fn deps(&self) -> &D {
        &self.deps
    }
}

/// Whether event `event` is taken by one of `handlers` or is the flow's end `end` (what
/// `choreography!` checks of each handler's event).
#[doc(hidden)]
pub const fn is_taken(handlers: &[HandlerInfo], event: &str, end: &str) -> bool {
    if same(event, end) {
        return true;
    }
    let mut i = 0;
    while i < handlers.len() {
        if same(handlers[i].on, event) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether event `event` is the flow's start `start` or emitted by one of `handlers` (what
/// `choreography!` checks of the event each handler takes).
#[doc(hidden)]
pub const fn is_emitted(handlers: &[HandlerInfo], event: &str, start: &str) -> bool {
    if same(event, start) {
        return true;
    }
    let mut i = 0;
    while i < handlers.len() {
        if same(handlers[i].emits, event) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether no handler before the one at `index` in `handlers` takes the event it takes (a flow
/// is a chain: an event goes to one handler).
#[doc(hidden)]
pub const fn takes_alone(handlers: &[HandlerInfo], index: usize) -> bool {
    let mut i = 0;
    while i < index {
        // The same handler listed again is reported as that.
        let again = same(handlers[i].handler, handlers[index].handler);
        if !again && same(handlers[i].on, handlers[index].on) {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether no handler before the one at `index` in `handlers` emits the event it emits, and it
/// emits neither the flow's start nor an event it takes itself.
#[doc(hidden)]
pub const fn emits_alone(handlers: &[HandlerInfo], index: usize, start: &str) -> bool {
    if same(handlers[index].emits, start) || same(handlers[index].emits, handlers[index].on) {
        return false;
    }
    let mut i = 0;
    while i < index {
        let again = same(handlers[i].handler, handlers[index].handler);
        if !again && same(handlers[i].emits, handlers[index].emits) {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether a flow from `start` to `end` is whole: a handler takes the start, one emits the end,
/// and none takes the end.
#[doc(hidden)]
pub const fn is_whole(handlers: &[HandlerInfo], start: &str, end: &str) -> bool {
    let (mut started, mut ended) = (false, false);
    let mut i = 0;
    while i < handlers.len() {
        if same(handlers[i].on, end) {
            return false;
        }
        started |= same(handlers[i].on, start);
        ended |= same(handlers[i].emits, end);
        i += 1;
    }
    started && ended && !same(start, end)
}

/// Whether no handler before the one at `index` in `handlers` has its name (so that a handler
/// listed twice is reported where it is listed again).
#[doc(hidden)]
pub const fn is_unique(handlers: &[HandlerInfo], index: usize) -> bool {
    let mut i = 0;
    while i < index {
        if same(handlers[i].handler, handlers[index].handler) {
            return false;
        }
        i += 1;
    }
    true
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests;
