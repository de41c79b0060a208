//! Declarative sagas for Rust.
//!
//! A saga runs a business process as a sequence of local steps. Each step has an action and,
//! usually, a compensation. If a step fails for good, the steps that already completed are
//! compensated in reverse order, so the system ends consistent without a distributed transaction.
//!
//! Write ordinary `async fn`s, mark them `#[saga_step]`, list them in `saga!`, and run the
//! generated saga:
//!
//! ```
//! use saga_runtime::{saga, saga_step, StepCx, StepError, SagaOutcome};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Default, Serialize, Deserialize)]
//! struct OrderCtx {
//!     reservation: Option<u32>,
//!     charged: bool,
//! }
//!
//! #[saga_step(compensate = release_inventory, timeout = "5s", retries = 2)]
//! async fn reserve_inventory(ctx: &mut OrderCtx) -> Result<(), StepError> {
//!     ctx.reservation = Some(7);
//!     Ok(())
//! }
//!
//! async fn release_inventory(ctx: &mut OrderCtx) -> Result<(), StepError> {
//!     ctx.reservation = None;
//!     Ok(())
//! }
//!
//! #[saga_step(pivot)]
//! async fn charge_payment(ctx: &mut OrderCtx, cx: &StepCx) -> Result<(), StepError> {
//!     let _key = cx.idempotency_key(); // "{saga_id}:charge_payment"
//!     ctx.charged = true;
//!     Ok(())
//! }
//!
//! saga! {
//!     /// Order fulfilment.
//!     OrderSaga(OrderCtx, ()) {
//!         reserve_inventory,
//!         charge_payment,
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), saga_runtime::SagaError> {
//! match OrderSaga::run(OrderCtx::default()).await? {
//!     SagaOutcome::Completed { ctx, .. } => assert!(ctx.charged),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! See the README for every `#[saga_step]` key, the semantics table and the compile errors.

#![warn(missing_docs)]

mod built;
pub mod bus;
pub mod choreography;
mod client;
mod engine;
mod error;
mod event;
mod executor;
#[doc(hidden)]
pub mod failpoint;
mod graph;
mod id;
mod machine;
pub mod metrics;
mod outcome;
mod output;
mod progress;
pub mod remote;
mod request;
mod results;
mod retry;
mod saga;
mod shape;
mod status;
mod step;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::built::{
    BuildError, BuiltSaga, BuiltStep, GroupBuilder, SagaBuilder, SagaDefinition,
};
pub use crate::client::{SagaClient, SagaRequest};
pub use crate::engine::{Engine, EngineBuilder, RecoveryReport};
pub use crate::error::{ErrorKind, ResultExt, SagaError, StepError};
pub use crate::event::{SagaEvent, SagaEventKind, StepName};
pub use crate::id::SagaId;
pub use crate::outcome::{CompensationFailure, RollbackCause, SagaOutcome};
pub use crate::output::{
    NamedStep, Output, OutputError, OutputValue, Outputs, RecordedOutput, StepValue,
};
pub use crate::progress::{NodeState, Progress, Rollback};
pub use crate::request::{OperatorRequest, Refusal};
pub use crate::results::{StepResult, StepResults};
pub use crate::retry::{Backoff, Jitter};
pub use crate::saga::{Saga, SagaContext, SagaDescription, SagaKind, SagaOptions, StepEnum};
pub use crate::shape::{SagaShape, StepShape, UndoShape};
pub use crate::status::SagaStatus;
// The macros' support types (`SagaStep`, `StepDef`, `StepFn`, `StepFuture`) are not here: only
// expansions use them, through `__private`.
pub use crate::step::{CompensationRetries, Phase, StepCx, StepDescription, StepPolicy, Undo};

/// Marks an `async fn` as a saga step: `#[saga_step(key = value, ...)]` on
/// `async fn step(ctx: &mut Ctx) -> Result<T, StepError>`, optionally with a second parameter
/// `cx: &StepCx<Deps>` (the step handle). `T` is `()` or the step's typed output, any type serde
/// can write and read: it is recorded with the step's completion, handed to its compensation
/// and kept in the outcome ([`SagaOutcome::output`]).
///
/// Keys, all optional:
/// - `compensate = path`: the step's undo, a plain `async fn` with the step's parameters and,
///   optionally, the step's output last.
/// - `pivot`: the point of no return; once it completed, later failures are not compensated.
/// - `nothing_to_undo`: the step has no effect to undo.
/// - `timeout = "5s"`: the limit of each attempt (units `ns us ms s m h d`, compounds `"1m30s"`).
/// - `retries = N`: attempts after the first, for transient errors and timeouts (at most 1000).
/// - `backoff = "100ms"`: base of the exponential, jittered wait between attempts (`"0s"`: none).
/// - `fallback = path`: another `#[saga_step]` run in place of the step when it failed for good.
/// - `compensation_retries = N` or `"forever"`: retries of the compensation (default 4).
/// - `compensate_on_timeout`: when the step times out for good, run its compensation as well.
/// - `crate = "path"`: where this crate is, for a crate that re-exports it.
///
/// Every step but the last of a saga must say what rollback does with it (`compensate`,
/// `pivot` or `nothing_to_undo`), and so must its fallback. Mistakes are compile errors at the
/// offending token.
///
/// ```
/// use saga_runtime::{saga_step, StepCx, StepError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Default, Serialize, Deserialize)]
/// struct Order {
///     reserved: bool,
/// }
///
/// #[saga_step(compensate = release, timeout = "5s", retries = 2, backoff = "100ms")]
/// async fn reserve(order: &mut Order, cx: &StepCx<()>) -> Result<(), StepError> {
///     assert!(cx.attempt() >= 1);
///     order.reserved = true;
///     Ok(())
/// }
///
/// async fn release(order: &mut Order, _cx: &StepCx<()>) -> Result<(), StepError> {
///     order.reserved = false;
///     Ok(())
/// }
///
/// /// What the payment service answered: `charge`'s output.
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Payment {
///     id: String,
/// }
///
/// #[saga_step(compensate = refund)]
/// async fn charge(order: &mut Order, cx: &StepCx<()>) -> Result<Payment, StepError> {
///     Ok(Payment { id: cx.idempotency_key() })
/// }
///
/// /// Receives what `charge` returned, as it was recorded.
/// async fn refund(order: &mut Order, cx: &StepCx<()>, payment: Payment) -> Result<(), StepError> {
///     assert_eq!(payment.id, format!("{}:charge", cx.saga_id()));
///     Ok(())
/// }
/// ```
#[cfg(feature = "macros")]
pub use saga_macros::saga_step;

/// Declares a saga: `saga! { pub OrderSaga(Ctx, Deps) { step_a, step_b, path::to::step_c } }`,
/// the dependencies type optional (`()`), the steps run in the order listed.
///
/// Optional `#[saga(...)]` keys before the name: `best_effort_rollback` (keep compensating older
/// steps after a compensation fails for good), `deadline = "30s"` (the whole saga's deadline,
/// greater than zero), `crate = "path"` (where this crate is, for a crate that re-exports it).
///
/// It generates the saga type (`OrderSaga`, with `run`, `run_with`, `start`, `start_with`,
/// `request`, `status`, `wait`, `cancel`, `on(&engine)` and `description`), the step enum
/// `OrderSagaStep` (one CamelCase variant per step) and the aliases `OrderSagaStatus` and
/// `OrderSagaOutcome`.
///
/// ```
/// use saga_runtime::{saga, saga_step, StepError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Default, Serialize, Deserialize)]
/// pub struct Order {
///     paid: bool,
///     shipped: bool,
/// }
///
/// #[saga_step(pivot)]
/// async fn charge(order: &mut Order) -> Result<(), StepError> {
///     order.paid = true;
///     Ok(())
/// }
///
/// #[saga_step]
/// async fn ship(order: &mut Order) -> Result<(), StepError> {
///     order.shipped = true;
///     Ok(())
/// }
///
/// saga! {
///     #[saga(deadline = "30s")]
///     pub OrderSaga(Order) { charge, ship }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let outcome = OrderSaga::run(Order::default()).await.unwrap();
/// assert!(outcome.is_completed());
/// assert_eq!(OrderSagaStep::ALL, [OrderSagaStep::Charge, OrderSagaStep::Ship]);
/// # });
/// ```
#[cfg(feature = "macros")]
pub use saga_macros::saga;

/// Declares a handler: of a choreographed saga's event, an `async fn` that takes the event and
/// `&HandlerCx<Deps>` and returns the next event (see [`choreography`](mod@choreography)); or of
/// a participant service's command, an `async fn` that takes the command and
/// `ParticipantCx<Deps>` and returns the command's reply (registered with
/// [`Participant::handler`](remote::Participant::handler), see [`remote`]).
///
/// ```text
/// #[saga_handler(compensate = release, retries = 5, backoff = "200ms", timeout = "2s")]
/// async fn reserve(event: OrderPlaced, cx: &HandlerCx<Stock>) -> Result<StockReserved, StepError>
///
/// #[saga_handler]
/// async fn charge(command: Charge, cx: ParticipantCx<Gateway>) -> Result<Payment, StepError>
/// ```
///
/// The keys, for an event's handler only (a command is retried, timed and undone by the step
/// that sends it):
///
/// - `compensate = f`: how its work is undone: `async fn f(event: OrderPlaced, emitted:
///   StockReserved, cx: &HandlerCx<Stock>) -> Result<(), StepError>`; or `nothing_to_undo`. A
///   flow requires one of the two of every handler it lists.
/// - `retries = n` (default 3), `backoff = ".."` (default 100 ms): a transient error is retried
///   `n` times, the event coming again after the backoff; a permanent one, or the last retry's,
///   fails the saga.
/// - `timeout = ".."`: how long one run may take (none by default).
/// - `crate = "path"`: where the runtime is, when not at `::saga_runtime`.
#[cfg(feature = "macros")]
pub use saga_macros::saga_handler;

/// Declares a choreographed saga's flow: the event that starts it, the one that ends it, and its
/// handlers by service (see [`choreography`](mod@choreography) for an example).
///
/// ```text
/// choreography! {
///     /// Orders, from placed to shipped.
///     pub OrderFlow(OrderPlaced => OrderShipped) {
///         inventory: reserve,
///         payments: charge,
///         shipping: ship,
///     }
/// }
/// ```
///
/// It makes the type `OrderFlow` with `OrderFlow::start(&bus, event)` (a new saga),
/// `OrderFlow::status(&engine, id)` (as a [`Tracker`](choreography::Tracker) recorded it), and one
/// function per service that returns the service ready to run:
/// `OrderFlow::inventory(bus, deps).run().await`. At compile time, at the handler's name: every
/// handler must say how its work is undone, take the start event or one a handler of the flow
/// emits, emit the end event or one a handler takes, and share its service's dependencies.
#[cfg(feature = "macros")]
pub use saga_macros::choreography;

// Not public API.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
