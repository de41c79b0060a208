//! Remote steps over both transports (in memory, and NATS JetStream when `SAGA_NATS_URL` is
//! set): a step carried out by a participant service completes with the service's typed reply,
//! which later steps and its compensation receive; a remote failure rolls back the earlier steps,
//! remote (compensated by their services) and local, in reverse order; retries and timeouts
//! behave as for a local step, and a late reply to an attempt that timed out is dropped and
//! counted.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::bus::Bus;
use saga_runtime::{Engine, SagaOutcome};
use saga_tests::checkout::{charge, order, services, Checkout, CheckoutStep, Ledger, Order};
use saga_tests::payments::{buses, Payment};

/// Runs `order` through `Checkout` on an engine with `bus`, the payments service beside it
/// (still running); returns the outcome, what both sides did, the engine and the service.
async fn checkout(
    bus: &Arc<dyn Bus>,
    order: Order,
) -> (
    SagaOutcome<Order, CheckoutStep>,
    Vec<String>,
    Engine,
    tokio::task::JoinHandle<Result<(), saga_runtime::bus::BusError>>,
) {
    let ledger = Arc::new(Ledger::default());
    let service = services(bus, &ledger);
    let engine = Engine::builder().bus(bus.clone()).build();
    let outcome = Checkout::on(&engine)
        .run_with(order, ledger.clone())
        .await
        .unwrap();
    (outcome, ledger.entries(), engine, service)
}

/// Stops a service, and waits until it has.
async fn stop(service: tokio::task::JoinHandle<Result<(), saga_runtime::bus::BusError>>) {
    service.abort();
    let _ = service.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_step_completes_with_the_services_typed_reply() {
    for (name, bus) in buses("the remote step tests on NATS", Duration::from_secs(30)).await {
        let (outcome, ledger, _, service) = checkout(&bus, order("ok", false)).await;
        stop(service).await;
        assert!(outcome.is_completed(), "{name}: {outcome:?}");
        let key = format!("{}:charge", outcome.id());
        assert_eq!(
            ledger,
            [
                "orders: reserve".to_string(),
                format!("payments: charge 42 attempt 1 as {key}"),
                "inventory: allocate".to_string(),
                "orders: ship paid by pay-1".to_string(),
            ],
            "{name}"
        );
        assert_eq!(
            outcome.output::<charge>().unwrap(),
            Some(Payment {
                id: "pay-1".into(),
                amount: 42
            }),
            "{name}"
        );
        assert_eq!(outcome.ctx().shipped.as_deref(), Some("pay-1"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_after_and_at_a_remote_step_roll_back_in_reverse_order() {
    for (name, bus) in buses("the remote step tests on NATS", Duration::from_secs(30)).await {
        // The step after the remote ones fails: their services undo them, the payment refunded
        // from its recorded reply, then the local step is undone.
        let (outcome, ledger, _, service) = checkout(&bus, order("ok", true)).await;
        stop(service).await;
        assert!(
            matches!(outcome, SagaOutcome::Compensated { .. }),
            "{name}: {outcome:?}"
        );
        let id = outcome.id();
        assert_eq!(
            ledger[3..],
            [
                "orders: ship refused".to_string(),
                "inventory: restock".to_string(),
                format!("payments: refund pay-1 of 42 as {id}:charge:compensate"),
                "orders: release".to_string(),
            ],
            "{name}"
        );
        // A remote step fails for good after a remote and a local one: both undone, in
        // reverse order, each by whoever did it.
        let sold_out = Order {
            sold_out: true,
            ..order("ok", false)
        };
        let (outcome, ledger, _, service) = checkout(&bus, sold_out).await;
        stop(service).await;
        let SagaOutcome::Compensated { cause, .. } = &outcome else {
            panic!("{name}: {outcome:?}")
        };
        assert_eq!(
            cause.to_string(),
            "step `allocate` failed: sold out",
            "{name}"
        );
        let id = outcome.id();
        assert_eq!(
            ledger,
            [
                "orders: reserve".to_string(),
                format!("payments: charge 42 attempt 1 as {id}:charge"),
                "inventory: allocate refused".to_string(),
                format!("payments: refund pay-1 of 42 as {id}:charge:compensate"),
                "orders: release".to_string(),
            ],
            "{name}"
        );
        // The remote step fails for good: only the step before it is undone.
        let (outcome, ledger, _, service) = checkout(&bus, order("decline", false)).await;
        stop(service).await;
        let SagaOutcome::Compensated { cause, .. } = &outcome else {
            panic!("{name}: {outcome:?}")
        };
        assert_eq!(
            cause.to_string(),
            "step `charge` failed: card declined",
            "{name}"
        );
        assert_eq!(ledger.len(), 3, "{name}: {ledger:?}");
        assert_eq!(ledger[2], "orders: release", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_step_is_retried_after_a_transient_error_under_the_same_key() {
    for (name, bus) in buses("the remote step tests on NATS", Duration::from_secs(30)).await {
        let (outcome, ledger, _, service) = checkout(&bus, order("busy-once", false)).await;
        stop(service).await;
        assert!(outcome.is_completed(), "{name}: {outcome:?}");
        let key = format!("{}:charge", outcome.id());
        assert_eq!(
            ledger[1..3],
            [
                format!("payments: charge 42 attempt 1 as {key}"),
                format!("payments: charge 42 attempt 2 as {key}"),
            ],
            "{name}"
        );
        assert_eq!(outcome.ctx().shipped.as_deref(), Some("pay-2"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_step_times_out_and_its_late_reply_is_dropped_and_counted() {
    for (name, bus) in buses("the remote step tests on NATS", Duration::from_secs(30)).await {
        let (outcome, _, engine, service) = checkout(&bus, order("slow-once", false)).await;
        // Attempt 1 took 1.5 s against a 1 s timeout; attempt 2 went through.
        assert!(outcome.is_completed(), "{name}: {outcome:?}");
        assert_eq!(outcome.ctx().shipped.as_deref(), Some("pay-2"), "{name}");
        let history = engine.history(outcome.id()).await.unwrap();
        let timed_out = history.iter().any(|event| {
            matches!(&event.kind, saga_runtime::SagaEventKind::RetryScheduled { error, .. }
                if error.kind() == saga_runtime::ErrorKind::Timeout)
        });
        assert!(timed_out, "{name}: {history:?}");
        // Attempt 1's reply comes late, to nobody: dropped, counted.
        let started = std::time::Instant::now();
        while engine.stale_replies() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name}: the late reply was not counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(engine.stale_replies(), 1, "{name}");
        stop(service).await;
    }
}

#[tokio::test]
async fn a_remote_step_on_an_engine_without_a_bus_fails_saying_so() {
    let engine = Engine::in_memory();
    let outcome = Checkout::on(&engine)
        .run_with(order("ok", false), Arc::new(Ledger::default()))
        .await
        .unwrap();
    let SagaOutcome::Compensated { cause, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        cause.to_string(),
        "step `charge` failed: step `charge` is carried out by service `payments`, but this \
         engine has no bus (EngineBuilder::bus)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_resumes_a_remote_step_gets_the_reply_to_the_command_sent_once() {
    for (name, bus) in buses("the remote step tests on NATS", Duration::from_secs(30)).await {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sagas.db");
        let ledger = Arc::new(Ledger::default());
        // Worker A sends the command, then dies waiting for the reply (no service runs yet):
        // its runtime, with every task of it, is dropped.
        let (a_bus, a_path, a_ledger) = (bus.clone(), path.clone(), ledger.clone());
        let id = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let a = Engine::builder()
                    .sqlite(&a_path)
                    .unwrap()
                    .bus(a_bus)
                    .worker_id("a")
                    .lease(Duration::from_millis(300))
                    .claims(false)
                    .build();
                let id = Checkout::on(&a)
                    .request(order("ok", false))
                    .deps(a_ledger)
                    .start()
                    .await
                    .unwrap();
                let charging = saga_runtime::SagaStatus::Running {
                    step: CheckoutStep::Charge,
                };
                let started = std::time::Instant::now();
                while Checkout::on(&a).status(id).await.unwrap() != charging {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "charge never started"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                id
            })
        })
        .join()
        .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Worker B takes the saga over and sends the command again: the same message, dropped
        // by the bus as a duplicate; the service, started now, runs it once.
        let b = Engine::builder()
            .sqlite(&path)
            .unwrap()
            .bus(bus.clone())
            .worker_id("b")
            .register::<Checkout>(ledger.clone())
            .build();
        let report = b.recover().await.unwrap();
        assert_eq!(report.resumed, [id], "{name}: {report:?}");
        let service = services(&bus, &ledger);
        let outcome = tokio::time::timeout(Duration::from_secs(20), Checkout::on(&b).wait(id))
            .await
            .expect("the saga ended")
            .unwrap();
        assert!(outcome.is_completed(), "{name}: {outcome:?}");
        let charges: Vec<String> = ledger
            .entries()
            .into_iter()
            .filter(|e| e.starts_with("payments:"))
            .collect();
        assert_eq!(
            charges,
            [format!("payments: charge 42 attempt 1 as {id}:charge")],
            "{name}"
        );
        assert_eq!(outcome.ctx().shipped.as_deref(), Some("pay-1"), "{name}");
        stop(service).await;
    }
}

#[test]
fn the_description_names_the_service_that_carries_a_remote_step_out() {
    let description = Checkout::description().to_string();
    assert!(
        description
            .contains("2. charge, remote = payments.charge, compensate = refund, timeout = 1s"),
        "{description}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_that_share_a_bus_but_not_a_store_each_get_their_own_replies() {
    for (name, bus) in buses("the remote step tests on NATS", Duration::from_secs(30)).await {
        let ledger = Arc::new(Ledger::default());
        let service = services(&bus, &ledger);
        // Two orchestrators on stores of their own (in memory), one bus: a reply goes to the
        // engine whose saga sent the command, never to the other, which knows nothing of it.
        let a = Engine::builder().bus(bus.clone()).build();
        let b = Engine::builder().bus(bus.clone()).build();
        let runs = (0..20).map(|i| {
            let engine = if i % 2 == 0 { a.clone() } else { b.clone() };
            let ledger = ledger.clone();
            async move {
                Checkout::on(&engine)
                    .run_with(order("ok", false), ledger)
                    .await
                    .unwrap()
            }
        });
        let outcomes = futures_util::future::join_all(runs).await;
        stop(service).await;
        for outcome in &outcomes {
            assert!(outcome.is_completed(), "{name}: {outcome:?}");
            // Answered at the first attempt: no reply was lost to the other engine.
            assert_eq!(outcome.ctx().shipped.as_deref(), Some("pay-1"), "{name}");
        }
        assert_eq!((a.stale_replies(), b.stale_replies()), (0, 0), "{name}");
    }
}
