//! The bus conformance suite: the bus contract (see [the module](super)) as tests that any
//! [`Bus`] runs unchanged, the in-memory one and NATS JetStream in this workspace's tests. Each
//! case takes a fresh bus whose ack wait is [`ACK_WAIT`], and runs on the real clock.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use saga_runtime::bus::{conformance, MemoryBus};
//!
//! for (name, case) in conformance::CASES {
//!     case(Arc::new(MemoryBus::builder().ack_wait(conformance::ACK_WAIT).build())).await;
//!     println!("{name}: ok");
//! }
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::{Bus, BusErrorKind, Deliveries, Delivery, Outgoing, Published};

/// The ack wait the cases expect of the bus they are given.
pub const ACK_WAIT: Duration = Duration::from_millis(600);

/// How long a case waits for a delivery that must come.
const PATIENCE: Duration = Duration::from_secs(10);

/// One case: runs against a fresh bus and panics on a breach of the contract.
pub type Case = fn(Arc<dyn Bus>) -> BoxFuture<'static, ()>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("messages_reach_a_consumer_in_order", |b| {
        Box::pin(messages_reach_a_consumer_in_order(b))
    }),
    ("a_seen_id_is_a_duplicate_and_not_delivered_again", |b| {
        Box::pin(a_seen_id_is_a_duplicate_and_not_delivered_again(b))
    }),
    (
        "an_unanswered_delivery_comes_again_after_the_ack_wait",
        |b| Box::pin(an_unanswered_delivery_comes_again_after_the_ack_wait(b)),
    ),
    ("a_refused_delivery_comes_again_after_its_delay", |b| {
        Box::pin(a_refused_delivery_comes_again_after_its_delay(b))
    }),
    ("consumers_each_get_every_message_subscribers_share", |b| {
        Box::pin(consumers_each_get_every_message_subscribers_share(b))
    }),
    ("a_consumer_gets_only_what_its_filter_matches", |b| {
        Box::pin(a_consumer_gets_only_what_its_filter_matches(b))
    }),
    ("a_consumer_resumes_where_it_was_acknowledged", |b| {
        Box::pin(a_consumer_resumes_where_it_was_acknowledged(b))
    }),
    ("bad_subjects_filters_and_names_are_refused", |b| {
        Box::pin(bad_subjects_filters_and_names_are_refused(b))
    }),
];

/// The next delivery, which must come within [`PATIENCE`].
async fn next(deliveries: &mut Deliveries) -> Delivery {
    tokio::time::timeout(PATIENCE, deliveries.next())
        .await
        .expect("a delivery came in time")
        .expect("the subscription goes on")
        .expect("the bus delivered")
}

/// Nothing is delivered within `wait`.
async fn nothing_within(deliveries: &mut Deliveries, wait: Duration) {
    if let Ok(Some(delivery)) = tokio::time::timeout(wait, deliveries.next()).await {
        panic!("nothing was to be delivered, got {delivery:?}");
    }
}

async fn publish(bus: &dyn Bus, subject: &str, id: &str, payload: &str) -> Published {
    bus.publish(Outgoing::new(subject, id, payload.as_bytes().to_vec()))
        .await
        .expect("published")
}

async fn messages_reach_a_consumer_in_order(bus: Arc<dyn Bus>) {
    let mut deliveries = bus.consume("orders", "orders.>").await.unwrap();
    for i in 0..5 {
        let stored = publish(&*bus, &format!("orders.{i}"), &format!("id-{i}"), "{}").await;
        assert!(matches!(stored, Published::Stored { .. }), "{stored:?}");
    }
    for i in 0..5 {
        let delivery = next(&mut deliveries).await;
        assert_eq!(delivery.subject(), format!("orders.{i}"));
        assert_eq!(delivery.id(), format!("id-{i}"));
        assert_eq!(delivery.payload(), b"{}");
        assert_eq!(delivery.delivered(), 1);
        delivery.ack().await.unwrap();
    }
    nothing_within(&mut deliveries, ACK_WAIT * 2).await;
}

async fn a_seen_id_is_a_duplicate_and_not_delivered_again(bus: Arc<dyn Bus>) {
    let first = publish(&*bus, "orders.created", "order-1", "first").await;
    assert!(matches!(first, Published::Stored { .. }));
    let again = publish(&*bus, "orders.created", "order-1", "again").await;
    assert_eq!(again, Published::Duplicate);
    let mut deliveries = bus.consume("orders", "orders.created").await.unwrap();
    let delivery = next(&mut deliveries).await;
    assert_eq!(delivery.payload(), b"first");
    delivery.ack().await.unwrap();
    nothing_within(&mut deliveries, ACK_WAIT * 2).await;
}

async fn an_unanswered_delivery_comes_again_after_the_ack_wait(bus: Arc<dyn Bus>) {
    let mut deliveries = bus.consume("orders", "orders.>").await.unwrap();
    publish(&*bus, "orders.created", "order-1", "x").await;
    let started = tokio::time::Instant::now();
    let first = next(&mut deliveries).await;
    assert_eq!(first.delivered(), 1);
    // Neither acknowledged nor refused (its handler crashed, say).
    drop(first);
    let again = next(&mut deliveries).await;
    assert!(started.elapsed() >= ACK_WAIT, "{:?}", started.elapsed());
    assert_eq!((again.id(), again.delivered()), ("order-1", 2));
    again.ack().await.unwrap();
    nothing_within(&mut deliveries, ACK_WAIT * 2).await;
}

async fn a_refused_delivery_comes_again_after_its_delay(bus: Arc<dyn Bus>) {
    let mut deliveries = bus.consume("orders", "orders.>").await.unwrap();
    publish(&*bus, "orders.created", "order-1", "x").await;
    let first = next(&mut deliveries).await;
    let refused = tokio::time::Instant::now();
    first.nak(Duration::from_millis(200)).await.unwrap();
    let again = next(&mut deliveries).await;
    assert!(
        refused.elapsed() >= Duration::from_millis(150),
        "{:?}",
        refused.elapsed()
    );
    assert_eq!(again.delivered(), 2);
    again.ack().await.unwrap();
}

async fn consumers_each_get_every_message_subscribers_share(bus: Arc<dyn Bus>) {
    let mut payments = bus.consume("payments", "orders.>").await.unwrap();
    let mut inventory = bus.consume("inventory", "orders.>").await.unwrap();
    let mut inventory_too = bus.consume("inventory", "orders.>").await.unwrap();
    for i in 0..6 {
        publish(&*bus, "orders.created", &format!("order-{i}"), "x").await;
    }
    let mut paid = Vec::new();
    for _ in 0..6 {
        let delivery = next(&mut payments).await;
        paid.push(delivery.id().to_owned());
        delivery.ack().await.unwrap();
    }
    assert_eq!(
        paid,
        (0..6).map(|i| format!("order-{i}")).collect::<Vec<_>>()
    );
    // The two subscribers of `inventory` share its six messages. (One that waited past the ack
    // wait on a loaded machine may come twice: delivery is at least once.)
    let mut reserved = std::collections::BTreeSet::new();
    while reserved.len() < 6 {
        let delivery = tokio::select! {
            d = next(&mut inventory) => d,
            d = next(&mut inventory_too) => d,
        };
        reserved.insert(delivery.id().to_owned());
        delivery.ack().await.unwrap();
    }
    assert_eq!(reserved.into_iter().collect::<Vec<_>>(), paid);
    nothing_within(&mut inventory, ACK_WAIT * 2).await;
    nothing_within(&mut inventory_too, ACK_WAIT).await;
}

async fn a_consumer_gets_only_what_its_filter_matches(bus: Arc<dyn Bus>) {
    let mut one_token = bus.consume("one", "orders.*").await.unwrap();
    let mut exact = bus.consume("exact", "orders.created").await.unwrap();
    publish(&*bus, "orders.created.eu", "a", "x").await;
    publish(&*bus, "payments.created", "b", "x").await;
    publish(&*bus, "orders.paid", "c", "x").await;
    publish(&*bus, "orders.created", "d", "x").await;
    let got = next(&mut one_token).await;
    assert_eq!(got.id(), "c");
    got.ack().await.unwrap();
    let got = next(&mut one_token).await;
    assert_eq!(got.id(), "d");
    got.ack().await.unwrap();
    let got = next(&mut exact).await;
    assert_eq!(got.id(), "d");
    got.ack().await.unwrap();
    nothing_within(&mut one_token, ACK_WAIT).await;
    nothing_within(&mut exact, ACK_WAIT).await;
}

async fn a_consumer_resumes_where_it_was_acknowledged(bus: Arc<dyn Bus>) {
    {
        let mut deliveries = bus.consume("orders", "orders.>").await.unwrap();
        publish(&*bus, "orders.created", "order-1", "x").await;
        publish(&*bus, "orders.created", "order-2", "x").await;
        let first = next(&mut deliveries).await;
        assert_eq!(first.id(), "order-1");
        first.ack().await.unwrap();
        // The subscriber goes away (its process ends) with order-2 unanswered or unsent.
    }
    publish(&*bus, "orders.created", "order-3", "x").await;
    let mut deliveries = bus.consume("orders", "orders.>").await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let delivery = next(&mut deliveries).await;
        ids.push(delivery.id().to_owned());
        delivery.ack().await.unwrap();
    }
    ids.sort();
    assert_eq!(ids, ["order-2", "order-3"]);
    nothing_within(&mut deliveries, ACK_WAIT * 2).await;
}

async fn bad_subjects_filters_and_names_are_refused(bus: Arc<dyn Bus>) {
    let refused = bus
        .publish(Outgoing::new("orders.*", "x", Vec::new()))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), BusErrorKind::Invalid);
    assert!(refused.message().contains("wildcard"), "{refused}");
    let refused = bus
        .publish(Outgoing::new("orders..created", "x", Vec::new()))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), BusErrorKind::Invalid);
    match bus.consume("pay.ments", "orders.>").await {
        Err(error) => assert_eq!(error.kind(), BusErrorKind::Invalid),
        Ok(_) => panic!("a consumer name with a dot was accepted"),
    }
    match bus.consume("payments", "orders.>.eu").await {
        Err(error) => assert_eq!(error.kind(), BusErrorKind::Invalid),
        Ok(_) => panic!("a filter with `>` inside was accepted"),
    }
    // A consumer keeps its filter.
    let _payments = bus.consume("payments", "orders.>").await.unwrap();
    match bus.consume("payments", "refunds.>").await {
        Err(error) => {
            assert_eq!(error.kind(), BusErrorKind::Invalid);
            assert!(error.message().contains("orders.>"), "{error}");
        }
        Ok(_) => panic!("a consumer changed its filter"),
    }
}
