//! A handler run again after its decision was published but its delivery not acknowledged (its
//! instance died in between): whatever the second run decides, the bus keeps the first decision,
//! so the saga never both goes on and rolls back.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Choreography, Event, Handler, HandlerCx, HandlerFuture, HandlerInfo, HandlerPolicy};
use crate::bus::{Answer, Bus, BusError, Deliveries, Delivery, MemoryBus, Outgoing, Published};
use crate::StepError;

#[derive(Serialize, Deserialize)]
struct Placed;
impl Event for Placed {
    const NAME: &'static str = "order.placed";
}

#[derive(Serialize, Deserialize)]
struct Reserved;
impl Event for Reserved {
    const NAME: &'static str = "stock.reserved";
}

#[derive(Serialize, Deserialize)]
struct Shipped;
impl Event for Shipped {
    const NAME: &'static str = "order.shipped";
}

/// What the handlers did, in order.
#[derive(Default)]
struct Log {
    entries: Mutex<Vec<String>>,
    runs: AtomicU32,
}

impl Log {
    fn note(&self, what: &str) {
        self.entries.lock().unwrap().push(what.to_owned());
    }
}

/// Fails for good on its first run, succeeds on the next.
struct Reserve;

impl Handler for Reserve {
    const NAME: &'static str = "reserve";
    const UNDO: bool = false;
    const POLICY: HandlerPolicy = HandlerPolicy::DEFAULT;
    type Deps = Arc<Log>;
    type On = Placed;
    type Emits = Reserved;

    fn handle(_: Placed, cx: &HandlerCx<Arc<Log>>) -> HandlerFuture<'_, Reserved> {
        Box::pin(async move {
            match cx.deps().runs.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    cx.deps().note("reserve: failed");
                    Err(StepError::permanent("out of stock"))
                }
                _ => {
                    cx.deps().note("reserve: reserved");
                    Ok(Reserved)
                }
            }
        })
    }

    fn compensate(_: Placed, _: Reserved, _: &HandlerCx<Arc<Log>>) -> HandlerFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// Ships what was reserved.
struct Ship;

impl Handler for Ship {
    const NAME: &'static str = "ship";
    const UNDO: bool = false;
    const POLICY: HandlerPolicy = HandlerPolicy::DEFAULT;
    type Deps = Arc<Log>;
    type On = Reserved;
    type Emits = Shipped;

    fn handle(_: Reserved, cx: &HandlerCx<Arc<Log>>) -> HandlerFuture<'_, Shipped> {
        Box::pin(async move {
            cx.deps().note("ship: shipped");
            Ok(Shipped)
        })
    }

    fn compensate(_: Reserved, _: Shipped, _: &HandlerCx<Arc<Log>>) -> HandlerFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

struct Flow;

impl Choreography for Flow {
    const NAME: &'static str = "Flow";
    type Start = Placed;
    type End = Shipped;
    const HANDLERS: &'static [HandlerInfo] = &[
        HandlerInfo::of::<Reserve>("inventory"),
        HandlerInfo::of::<Ship>("shipping"),
    ];
}

/// A bus that loses the acknowledgement of the first delivery on subjects ending in `event`:
/// as if the instance that handled it died after publishing what it decided.
struct LosesFirstAck {
    inner: MemoryBus,
    event: &'static str,
}

/// An answer that does nothing: the delivery comes again after the ack wait.
struct Lost;

impl Answer for Lost {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }

    fn nak(self: Box<Self>, _: Duration) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }
}

impl Bus for LosesFirstAck {
    fn publish(&self, message: Outgoing) -> BoxFuture<'_, Result<Published, BusError>> {
        self.inner.publish(message)
    }

    fn consume<'a>(
        &'a self,
        consumer: &'a str,
        filter: &'a str,
    ) -> BoxFuture<'a, Result<Deliveries, BusError>> {
        let event = self.event;
        Box::pin(async move {
            let deliveries = self.inner.consume(consumer, filter).await?;
            let deliveries: Deliveries = Box::pin(deliveries.map(move |delivery| {
                let delivery = delivery?;
                if !delivery.subject().ends_with(event) || delivery.delivered() > 1 {
                    return Ok(delivery);
                }
                let copy = Delivery::new(
                    delivery.subject().to_owned(),
                    delivery.id().to_owned(),
                    delivery.payload().to_vec(),
                    delivery.delivered(),
                    Box::new(Lost),
                );
                // The real one is dropped unanswered: it comes again after the ack wait.
                drop(delivery);
                Ok(copy)
            }));
            Ok(deliveries)
        })
    }
}

#[tokio::test]
async fn a_handler_run_again_cannot_undo_its_first_decision() {
    let bus: Arc<dyn Bus> = Arc::new(LosesFirstAck {
        inner: MemoryBus::builder()
            .ack_wait(Duration::from_millis(100))
            .build(),
        event: "order.placed",
    });
    let log = Arc::new(Log::default());
    let inventory = super::FlowService::new::<Flow>(bus.clone(), "inventory", log.clone())
        .with::<Reserve>()
        .run();
    let shipping = super::FlowService::new::<Flow>(bus.clone(), "shipping", log.clone())
        .with::<Ship>()
        .run();
    let services = tokio::spawn(async move {
        let _ = tokio::join!(inventory, shipping);
    });
    let compensated = bus
        .consume("test", "choreo.Flow.compensated")
        .await
        .unwrap();
    let id = super::start::<Flow>(&*bus, Placed).await.unwrap();
    let mut compensated = compensated;
    let first = tokio::time::timeout(Duration::from_secs(5), compensated.next())
        .await
        .expect("the saga was compensated")
        .unwrap()
        .unwrap();
    let envelope: super::FlowEnvelope = serde_json::from_slice(first.payload()).unwrap();
    assert_eq!(envelope.saga_id, id);
    // The event comes again (its first ack was lost); the second run succeeds, but its event
    // shares the first run's decision id: dropped, so nothing ships.
    let started = std::time::Instant::now();
    while log.runs.load(Ordering::SeqCst) < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "no second run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    services.abort();
    assert_eq!(
        *log.entries.lock().unwrap(),
        ["reserve: failed", "reserve: reserved"]
    );
}
