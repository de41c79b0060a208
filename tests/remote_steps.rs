//! Remote steps over both transports (in memory, and NATS JetStream when `SAGA_NATS_URL` is
//! set): a step carried out by a participant service completes with the service's typed reply,
//! which later steps and its compensation receive; a remote failure rolls back the earlier steps
//! in reverse order; retries and timeouts behave as for a local step, and a late reply to an
//! attempt that timed out is dropped and counted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_runtime::bus::Bus;
use saga_runtime::remote::{Participant, ParticipantCx};
use saga_runtime::{saga, saga_step, Engine, Output, SagaOutcome, StepCx, StepError};
use saga_tests::payments::{buses, Charge, Payment};
use serde::{Deserialize, Serialize};

/// What happened, in order, on either side.
#[derive(Default)]
struct Ledger(Mutex<Vec<String>>);

impl Ledger {
    fn note(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Order {
    total: u64,
    /// How the payments service treats the charge: "ok", "decline", "busy-once", "slow-once".
    payment: String,
    /// `ship` fails for good.
    no_courier: bool,
    shipped: Option<String>,
}

#[saga_step(compensate = release)]
async fn reserve(_order: &mut Order, cx: &StepCx<Arc<Ledger>>) -> Result<(), StepError> {
    cx.deps().note("orders: reserve".into());
    Ok(())
}

async fn release(_order: &mut Order, cx: &StepCx<Arc<Ledger>>) -> Result<(), StepError> {
    cx.deps().note("orders: release".into());
    Ok(())
}

/// Carried out by the payments service: builds the command.
#[saga_step(remote, compensate = refund, timeout = "1s", retries = 2, backoff = "10ms")]
async fn charge(order: &Order, _cx: &StepCx<Arc<Ledger>>) -> Result<Charge, StepError> {
    Ok(Charge {
        amount: order.total,
        behaviour: order.payment.clone(),
    })
}

async fn refund(
    _order: &Order,
    cx: &StepCx<Arc<Ledger>>,
    payment: Payment,
) -> Result<(), StepError> {
    cx.deps().note(format!("orders: refund {}", payment.id));
    Ok(())
}

#[saga_step]
async fn ship(
    order: &mut Order,
    cx: &StepCx<Arc<Ledger>>,
    payment: Output<charge>,
) -> Result<(), StepError> {
    if order.no_courier {
        cx.deps().note("orders: ship refused".into());
        return Err(StepError::permanent("no courier"));
    }
    cx.deps()
        .note(format!("orders: ship paid by {}", payment.id));
    order.shipped = Some(payment.id.clone());
    Ok(())
}

saga! {
    Checkout(Order, Arc<Ledger>) { reserve, charge, ship }
}

/// The payments service's handler.
async fn take_payment(
    command: Charge,
    cx: ParticipantCx<Arc<Ledger>>,
) -> Result<Payment, StepError> {
    let attempt = cx.attempt();
    cx.deps().note(format!(
        "payments: charge {} attempt {attempt} as {}",
        command.amount,
        cx.idempotency_key()
    ));
    match command.behaviour.as_str() {
        "decline" => return Err(StepError::permanent("card declined")),
        "busy-once" if attempt == 1 => return Err(StepError::transient("gateway busy")),
        "slow-once" if attempt == 1 => tokio::time::sleep(Duration::from_millis(1500)).await,
        _ => {}
    }
    Ok(Payment {
        id: format!("pay-{attempt}"),
        amount: command.amount,
    })
}

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
    let payments = Participant::new(bus.clone(), "payments", ledger.clone())
        .handle::<Charge, _, _>(take_payment);
    let service = tokio::spawn(payments.run());
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

fn order(payment: &str, no_courier: bool) -> Order {
    Order {
        total: 42,
        payment: payment.into(),
        no_courier,
        shipped: None,
    }
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
        // The step after the remote one fails: the remote step's compensation gets its reply.
        let (outcome, ledger, _, service) = checkout(&bus, order("ok", true)).await;
        stop(service).await;
        assert!(
            matches!(outcome, SagaOutcome::Compensated { .. }),
            "{name}: {outcome:?}"
        );
        assert_eq!(
            ledger[2..],
            [
                "orders: ship refused".to_string(),
                "orders: refund pay-1".to_string(),
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
        let payments = Participant::new(bus.clone(), "payments", ledger.clone())
            .handle::<Charge, _, _>(take_payment);
        let service = tokio::spawn(payments.run());
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
