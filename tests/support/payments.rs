//! The payments service's command, shared by the remote-step tests (the orchestrator's side) and
//! the participant tests (the service's side), as such types are shared between the processes
//! of a real deployment; and the buses both run on.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::bus::{Bus, MemoryBus, NatsBusOptions};
use saga_runtime::remote::Command;
use serde::{Deserialize, Serialize};

/// Charge `amount`; `behaviour` tells the test's handler what to do ("ok", "decline", ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    /// How much.
    pub amount: u64,
    /// What the test's handler does with it.
    pub behaviour: String,
}

/// What the payments service answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// The payment's id.
    pub id: String,
    /// How much was charged.
    pub amount: u64,
}

impl Command for Charge {
    const SERVICE: &'static str = "payments";
    const ACTION: &'static str = "charge";
    type Reply = Payment;
}

/// Refund payment `payment`: the compensation of [`Charge`], carried out by the payments
/// service too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    /// The payment's id.
    pub payment: String,
    /// How much to give back.
    pub amount: u64,
}

impl Command for Refund {
    const SERVICE: &'static str = "payments";
    const ACTION: &'static str = "refund";
    type Reply = ();
}

/// Each transport the tests run on, fresh, with ack wait `ack_wait`: the memory bus, and a
/// namespace of its own on the NATS server when `SAGA_NATS_URL` is set (`what` is said to be
/// skipped otherwise). The NATS namespaces expire after 10 minutes.
pub async fn buses(what: &str, ack_wait: Duration) -> Vec<(&'static str, Arc<dyn Bus>)> {
    let mut buses: Vec<(&'static str, Arc<dyn Bus>)> = vec![(
        "memory",
        Arc::new(MemoryBus::builder().ack_wait(ack_wait).build()),
    )];
    if let Some(url) = crate::nats_url(what) {
        let bus = NatsBusOptions::new(&url)
            .namespace(crate::fresh_schema("bus"))
            .ack_wait(ack_wait)
            .max_age(Duration::from_secs(600))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        buses.push(("nats", Arc::new(bus)));
    }
    buses
}
