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

/// A consumer of one process's own (`consume_own`: the replies to an engine's commands on a
/// store it does not share) is forgotten by the server once nobody has pulled from it for its
/// idle time, so that processes that are gone leave no consumers behind: attached again, it
/// starts from the first message the stream holds. A durable consumer (`consume`) keeps its
/// place through the same pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_s_own_consumer_is_forgotten_once_idle_and_a_durable_one_is_not() {
    use saga_runtime::bus::{Bus, Outgoing};

    let Some(url) = nats_url("the NATS bus's own consumers") else {
        return;
    };
    let bus = NatsBusOptions::new(&url)
        .namespace(fresh_schema("own"))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let idle = std::time::Duration::from_secs(1);
    bus.publish(Outgoing::new("reply.a", "1", b"one".to_vec()))
        .await
        .unwrap();
    let mut own = bus.consume_own("own-a", "reply.a", idle).await.unwrap();
    let mut durable = bus.consume("durable-a", "reply.a").await.unwrap();
    assert_eq!(first_id(&mut own).await, "1");
    assert_eq!(first_id(&mut durable).await, "1");
    drop((own, durable));

    // Both idle: past the pull requests' expiry and the own consumer's idle time.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    bus.publish(Outgoing::new("reply.a", "2", b"two".to_vec()))
        .await
        .unwrap();
    let mut own = bus.consume_own("own-a", "reply.a", idle).await.unwrap();
    let mut durable = bus.consume("durable-a", "reply.a").await.unwrap();
    assert_eq!(
        first_id(&mut own).await,
        "1",
        "the own consumer was forgotten: created again, it starts from the first message"
    );
    assert_eq!(
        first_id(&mut durable).await,
        "2",
        "the durable consumer kept its place"
    );
    bus.delete().await.unwrap();
}

/// The id of the next delivery on `deliveries` (within 10 s), acknowledged.
async fn first_id(deliveries: &mut saga_runtime::bus::Deliveries) -> String {
    use futures_util::StreamExt;
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), deliveries.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the subscription goes on")
        .expect("a delivery, not an error");
    let id = delivery.id().to_owned();
    delivery.ack().await.expect("acknowledged");
    id
}
