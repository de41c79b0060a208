//! Choreographed sagas over both transports (in memory, and NATS JetStream when
//! `SAGA_NATS_URL` is set): three services react to each other's events with no coordinator; a
//! saga completes; a handler failing for good has the services that did work undo it in reverse
//! order, each once; a transient failure is retried; a tracker records every saga's status and
//! history in an engine's store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_runtime::bus::Bus;
use saga_runtime::choreography::Tracker;
use saga_runtime::{Engine, SagaEventKind, SagaId, SagaStatus};
use saga_tests::payments::buses;
use saga_tests::shop::{Ledger, OrderPlaced, ShopFlow};

/// The three services and a tracker on `bus`, each service writing to `ledger`, the tracker to
/// `engine`'s store; dropping the handle stops them.
struct Running(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

fn run(bus: &Arc<dyn Bus>, ledger: &Arc<Ledger>, engine: &Engine) -> Running {
    let tasks = vec![
        tokio::spawn(drop_result(
            ShopFlow::inventory(bus.clone(), ledger.clone()).run(),
        )),
        tokio::spawn(drop_result(
            ShopFlow::payments(bus.clone(), ledger.clone()).run(),
        )),
        tokio::spawn(drop_result(
            ShopFlow::shipping(bus.clone(), ledger.clone()).run(),
        )),
        tokio::spawn(drop_result(
            Tracker::new(bus.clone(), engine).flow::<ShopFlow>().run(),
        )),
    ];
    Running(tasks)
}

async fn drop_result(
    run: impl std::future::Future<Output = Result<(), saga_runtime::bus::BusError>>,
) {
    if let Err(error) = run.await {
        panic!("a service stopped: {error}");
    }
}

/// Waits until the tracker recorded saga `id` as ended; its status.
async fn ended(engine: &Engine, id: SagaId, what: &str) -> SagaStatus<&'static str> {
    let started = Instant::now();
    loop {
        if let Some(status) = ShopFlow::status(engine, id).await.unwrap() {
            if status.is_terminal() {
                return status;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: saga {id} did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a saga of `order` on `bus` and waits until the tracker recorded it as ended: its id
/// and status.
async fn ran(
    bus: &Arc<dyn Bus>,
    engine: &Engine,
    name: &str,
    order: OrderPlaced,
) -> (SagaId, SagaStatus<&'static str>) {
    let id = ShopFlow::start(&**bus, order).await.unwrap();
    (id, ended(engine, id, name).await)
}

/// The history of saga `id` as one line per entry: `kind step`.
async fn history(engine: &Engine, id: SagaId) -> Vec<String> {
    engine
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .map(|event| match event.kind {
            SagaEventKind::SagaStarted { .. } => "started".to_string(),
            SagaEventKind::StepStarted { step, phase, .. } => format!("{phase:?} {step}"),
            SagaEventKind::StepCompleted { step, .. } => format!("completed {step}"),
            SagaEventKind::StepFailed { step, error, .. } => format!("failed {step}: {error}"),
            SagaEventKind::CompensationStarted { .. } => "rollback".to_string(),
            SagaEventKind::StepCompensated { step, .. } => format!("compensated {step}"),
            SagaEventKind::SagaCompleted { .. } => "saga completed".to_string(),
            SagaEventKind::SagaCompensated { .. } => "saga compensated".to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn placed(order: &str, trouble: &str) -> OrderPlaced {
    OrderPlaced {
        order: order.into(),
        trouble: trouble.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_choreographed_saga_completes_through_three_services() {
    for (name, bus) in buses("the choreography tests on NATS", Duration::from_secs(30)).await {
        let (ledger, engine) = (Arc::new(Ledger::default()), Engine::in_memory());
        let _running = run(&bus, &ledger, &engine);
        let (id, status) = ran(&bus, &engine, name, placed("o-1", "")).await;
        assert_eq!(status, SagaStatus::Completed, "{name}");
        assert_eq!(
            ledger.entries(),
            [
                "inventory: reserve o-1".to_string(),
                format!("payments: charge o-1 attempt 1 as {id}:charge_card"),
                "shipping: ship o-1".to_string(),
            ],
            "{name}"
        );
        assert_eq!(
            history(&engine, id).await,
            [
                "started",
                "Action reserve_stock",
                "completed reserve_stock",
                "Action charge_card",
                "completed charge_card",
                "Action ship_order",
                "completed ship_order",
                "saga completed",
            ],
            "{name}"
        );
        // Each handler's event is its step's output.
        let shipped = engine
            .history(id)
            .await
            .unwrap()
            .into_iter()
            .find_map(|e| match e.kind {
                SagaEventKind::StepCompleted { step, output, .. } if step == "ship_order" => output,
                _ => None,
            });
        assert_eq!(
            shipped.map(|o| o.json().clone()),
            Some(serde_json::json!({ "order": "o-1", "parcel": "parcel-o-1" })),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_undone_in_reverse_order_by_the_services_that_did_work() {
    for (name, bus) in buses("the choreography tests on NATS", Duration::from_secs(30)).await {
        let (ledger, engine) = (Arc::new(Ledger::default()), Engine::in_memory());
        let _running = run(&bus, &ledger, &engine);
        // Shipping fails for good: payments refund, then inventory releases.
        let (id, status) = ran(&bus, &engine, name, placed("o-2", "no-courier")).await;
        assert_eq!(status, SagaStatus::Compensated, "{name}");
        assert_eq!(
            ledger.entries(),
            [
                "inventory: reserve o-2".to_string(),
                format!("payments: charge o-2 attempt 1 as {id}:charge_card"),
                "shipping: refused o-2".to_string(),
                format!("payments: refund p-o-2 as {id}:charge_card:compensate"),
                "inventory: release r-o-2".to_string(),
            ],
            "{name}"
        );
        assert_eq!(
            history(&engine, id).await[5..],
            [
                "Action ship_order",
                "failed ship_order: no courier",
                "rollback",
                "Compensation charge_card",
                "compensated charge_card",
                "Compensation reserve_stock",
                "compensated reserve_stock",
                "saga compensated",
            ],
            "{name}"
        );
        // The payment is declined for good: only inventory had done work.
        let (id, status) = ran(&bus, &engine, name, placed("o-3", "decline")).await;
        assert_eq!(status, SagaStatus::Compensated, "{name}");
        let entries = ledger.entries();
        assert_eq!(
            entries
                .iter()
                .filter(|e| e.contains("o-3"))
                .cloned()
                .collect::<Vec<_>>(),
            [
                "inventory: reserve o-3".to_string(),
                format!("payments: charge o-3 attempt 1 as {id}:charge_card"),
                "inventory: release r-o-3".to_string(),
            ],
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_fails_for_good_and_what_ran_before_it_is_undone() {
    for (name, bus) in buses("the choreography tests on NATS", Duration::from_secs(30)).await {
        let (ledger, engine) = (Arc::new(Ledger::default()), Engine::in_memory());
        let _running = run(&bus, &ledger, &engine);
        let (id, status) = ran(&bus, &engine, name, placed("o-9", "panic")).await;
        assert_eq!(status, SagaStatus::Compensated, "{name}");
        // A panic is not retried (the handler has `retries = 2`): one attempt, then the undo.
        assert_eq!(
            ledger.entries(),
            [
                "inventory: reserve o-9".to_string(),
                format!("payments: charge o-9 attempt 1 as {id}:charge_card"),
                "inventory: release r-o-9".to_string(),
            ],
            "{name}"
        );
        let failed: Vec<String> = history(&engine, id)
            .await
            .into_iter()
            .filter(|line| line.starts_with("failed"))
            .collect();
        assert_eq!(failed.len(), 1, "{name}: {failed:?}");
        assert!(
            failed[0].starts_with("failed charge_card")
                && failed[0].contains("the handler panicked: gateway answered nonsense"),
            "{name}: {failed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_under_the_same_key() {
    for (name, bus) in buses("the choreography tests on NATS", Duration::from_secs(30)).await {
        let (ledger, engine) = (Arc::new(Ledger::default()), Engine::in_memory());
        let _running = run(&bus, &ledger, &engine);
        let (id, status) = ran(&bus, &engine, name, placed("o-4", "busy-once")).await;
        assert_eq!(status, SagaStatus::Completed, "{name}");
        assert_eq!(
            ledger.entries()[1..3],
            [
                format!("payments: charge o-4 attempt 1 as {id}:charge_card"),
                format!("payments: charge o-4 attempt 2 as {id}:charge_card"),
            ],
            "{name}"
        );
    }
}
