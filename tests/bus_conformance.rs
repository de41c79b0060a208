//! The bus conformance suite (`saga_runtime::bus::conformance`) on both transports: each case on
//! a fresh in-memory bus, and on a fresh namespace (a stream of its own) of the NATS JetStream
//! server `SAGA_NATS_URL` names (skipped, saying so, without it).

use std::sync::Arc;

use saga_runtime::bus::{conformance, MemoryBus, NatsBusOptions};
use saga_tests::{fresh_schema, nats_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_bus_keeps_the_contract() {
    for (name, case) in conformance::CASES {
        eprintln!("memory: {name}");
        let bus = MemoryBus::builder().ack_wait(conformance::ACK_WAIT).build();
        case(Arc::new(bus)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_bus_keeps_the_contract() {
    let Some(url) = nats_url("the NATS bus's conformance test") else {
        return;
    };
    for (name, case) in conformance::CASES {
        eprintln!("nats: {name}");
        // A namespace of its own per case: cases (and test runs) never see each other's messages.
        let bus = NatsBusOptions::new(&url)
            .namespace(fresh_schema("conformance"))
            .ack_wait(conformance::ACK_WAIT)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        case(Arc::new(bus.clone())).await;
        bus.delete().await.unwrap();
    }
}
