//! The test kit (feature `testing`): faults injected into a saga's steps, a log of what ran with
//! which idempotency keys, and the crash explorer, which proves that a saga recovers from a crash
//! at every durability boundary.
//!
//! Faults and the log go through an engine built with
//! [`EngineBuilder::test_kit`](crate::EngineBuilder::test_kit); the steps themselves are not
//! changed:
//!
//! ```
//! use saga_runtime::testing::{Fault, TestKit};
//! use saga_runtime::{saga, saga_step, Engine, SagaOutcome, StepError};
//! # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
//! # struct Ctx;
//!
//! #[saga_step(compensate = release, retries = 2, backoff = "0s")]
//! async fn reserve(_: &mut Ctx) -> Result<(), StepError> { Ok(()) }
//! async fn release(_: &mut Ctx) -> Result<(), StepError> { Ok(()) }
//! #[saga_step]
//! async fn charge(_: &mut Ctx) -> Result<(), StepError> { Ok(()) }
//! saga! { Order(Ctx, ()) { reserve, charge } }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let kit = TestKit::new();
//! kit.fail("reserve", 1, Fault::transient("stock service busy"));
//! kit.fail("charge", 1, Fault::permanent("card declined"));
//! let engine = Engine::builder().test_kit(&kit).build();
//! let outcome = Order::on(&engine).run(Ctx).await.unwrap();
//! assert!(matches!(outcome, SagaOutcome::Compensated { .. }));
//! // What ran and succeeded, in order: `reserve` on its second attempt, then its compensation.
//! assert_eq!(kit.succeeded(), ["reserve", "undo:reserve"]);
//! assert_eq!(kit.calls()[1].key, format!("{}:reserve", outcome.id()));
//! # }
//! ```
//!
//! [`CrashExplorer`] runs a saga once without a crash, then once per durability boundary that
//! run went through, crashing there (in process: from that point the engine's store refuses
//! everything, as a dead process writes nothing), recovering on a new engine and checking the
//! invariants against the run without a crash.

mod crashable;
mod explorer;
mod kit;

pub use explorer::{CrashExplorer, Exploration, Violation};
pub use kit::{Call, Fault, TestKit};

pub(crate) use kit::KitInner;
