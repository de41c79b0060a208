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

mod client;
mod engine;
mod error;
mod event;
mod executor;
#[doc(hidden)]
pub mod failpoint;
mod id;
mod machine;
mod outcome;
mod retry;
mod saga;
mod status;
mod step;
pub mod store;

pub use crate::client::{SagaClient, SagaRequest};
pub use crate::engine::{Engine, EngineBuilder, RecoveryReport};
pub use crate::error::{ErrorKind, ResultExt, SagaError, StepError};
pub use crate::event::{RollbackReason, SagaEvent, SagaEventKind, StepName};
pub use crate::id::SagaId;
pub use crate::outcome::{CompensationFailure, RollbackCause, SagaOutcome};
pub use crate::retry::{Backoff, Jitter};
pub use crate::saga::{Saga, SagaContext, SagaDescription, SagaOptions, StepEnum};
pub use crate::status::SagaStatus;
// The macros' support types (`SagaStep`, `StepDef`, `StepFn`, `StepFuture`) are not here: only
// expansions use them, through `__private`.
pub use crate::step::{CompensationRetries, Phase, StepCx, StepDescription, StepPolicy, Undo};

#[cfg(feature = "macros")]
pub use saga_macros::{saga, saga_step};

// Not public API.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
