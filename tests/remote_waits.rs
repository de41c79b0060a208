//! A remote step waits for its reply without holding a task (on a store other processes share,
//! over both transports): the run lets the saga go once the command is out, and the reply wakes
//! it, on the engine that sent the command or on another that sent nothing; with no reply, the
//! attempt's timeout, recorded in the store, wakes it and the step is retried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_runtime::bus::Bus;
use saga_runtime::{Engine, ErrorKind, SagaEventKind, SagaId, SagaStatus};
use saga_tests::checkout::{order, services, Checkout, CheckoutStep, Ledger};
use saga_tests::payments::buses;

/// An engine on the SQLite store at `path` with `bus`, running `Checkout`, that lets a saga go
/// once it has waited 50 ms for a reply.
fn engine(path: &std::path::Path, bus: &Arc<dyn Bus>, name: &str, ledger: &Arc<Ledger>) -> Engine {
    Engine::builder()
        .sqlite(path)
        .unwrap()
        .bus(bus.clone())
        .worker_id(name)
        .timer_threshold(Duration::from_millis(50))
        .register::<Checkout>(ledger.clone())
        .build()
}

/// Waits until saga `id` runs `charge` and no run of it is held by `engine`: it was let go.
async fn let_go(engine: &Engine, id: SagaId, what: &str) {
    let charging = SagaStatus::Running {
        step: CheckoutStep::Charge,
    };
    let started = Instant::now();
    while Checkout::on(engine).status(id).await.unwrap() != charging || engine.running_sagas() != 0
    {
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "{what}: the saga was not let go while it waited for its reply"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many times `charge`'s attempt `attempt` was recorded as started, and whether a retry
/// after a timeout was recorded, in saga `id`'s history.
async fn charge_history(engine: &Engine, id: SagaId, attempt: u32) -> (usize, bool) {
    let history = engine.history(id).await.unwrap();
    let started = history
        .iter()
        .filter(|e| {
            matches!(&e.kind, SagaEventKind::StepStarted { step, attempt: a, .. }
                if step == "charge" && *a == attempt)
        })
        .count();
    let timed_out = history.iter().any(|e| {
        matches!(&e.kind, SagaEventKind::RetryScheduled { error, .. }
            if error.kind() == ErrorKind::Timeout)
    });
    (started, timed_out)
}

fn charges(ledger: &Ledger) -> Vec<String> {
    ledger
        .entries()
        .into_iter()
        .filter(|e| e.starts_with("payments: charge"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_step_lets_its_saga_go_and_the_reply_resumes_it() {
    for (name, bus) in buses("the remote wait tests on NATS", Duration::from_secs(30)).await {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Ledger::default());
        let service = services(&bus, &ledger);
        let a = engine(&dir.path().join("sagas.db"), &bus, "a", &ledger);
        // The payments service takes 700 ms: the saga is let go after 50 ms of it.
        let id = Checkout::on(&a)
            .request(order("slow", false))
            .deps(ledger.clone())
            .start()
            .await
            .unwrap();
        let_go(&a, id, name).await;
        let outcome = tokio::time::timeout(Duration::from_secs(10), Checkout::on(&a).wait(id))
            .await
            .expect("the saga ended")
            .unwrap();
        service.abort();
        assert!(outcome.is_completed(), "{name}: {outcome:?}");
        // The reply resumed it: attempt 1 recorded again on resuming, answered, not timed out.
        assert_eq!(outcome.ctx().shipped.as_deref(), Some("pay-1"), "{name}");
        assert_eq!(charge_history(&a, id, 1).await, (2, false), "{name}");
        assert_eq!(
            charges(&ledger),
            [format!("payments: charge 42 attempt 1 as {id}:charge")],
            "{name}"
        );
        assert_eq!(a.stale_replies(), 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_let_go_wakes_at_its_attempts_timeout_and_retries() {
    for (name, bus) in buses("the remote wait tests on NATS", Duration::from_secs(30)).await {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Ledger::default());
        let service = services(&bus, &ledger);
        let a = engine(&dir.path().join("sagas.db"), &bus, "a", &ledger);
        // Attempt 1 takes 1.5 s against charge's 1 s timeout; attempt 2 goes through.
        let id = Checkout::on(&a)
            .request(order("slow-once", false))
            .deps(ledger.clone())
            .start()
            .await
            .unwrap();
        let_go(&a, id, name).await;
        let outcome = tokio::time::timeout(Duration::from_secs(10), Checkout::on(&a).wait(id))
            .await
            .expect("the saga ended")
            .unwrap();
        assert!(outcome.is_completed(), "{name}: {outcome:?}");
        assert_eq!(outcome.ctx().shipped.as_deref(), Some("pay-2"), "{name}");
        let (_, timed_out) = charge_history(&a, id, 1).await;
        assert!(timed_out, "{name}: attempt 1 did not time out");
        // Attempt 1's reply comes after its timeout woke the saga: dropped, counted.
        let started = Instant::now();
        while a.stale_replies() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name}: the late reply was not counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service.abort();
        assert_eq!(a.stale_replies(), 1, "{name}");
        assert_eq!(
            charges(&ledger),
            [
                format!("payments: charge 42 attempt 1 as {id}:charge"),
                format!("payments: charge 42 attempt 2 as {id}:charge"),
            ],
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_wakes_its_saga_on_an_engine_that_sent_nothing() {
    for (name, bus) in buses("the remote wait tests on NATS", Duration::from_secs(30)).await {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sagas.db");
        let ledger = Arc::new(Ledger::default());
        let service = services(&bus, &ledger);
        // Engine A sends the command, lets the saga go, and is gone: its runtime, with every
        // task of it, is dropped.
        let (a_bus, a_path, a_ledger) = (bus.clone(), path.clone(), ledger.clone());
        let id = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let a = engine(&a_path, &a_bus, "a", &a_ledger);
                let id = Checkout::on(&a)
                    .request(order("slow", false))
                    .deps(a_ledger)
                    .start()
                    .await
                    .unwrap();
                let_go(&a, id, name).await;
                id
            })
        })
        .join()
        .unwrap();
        // Engine B, started now, has sent nothing: the reply (due 700 ms after the command)
        // comes to it, and it resumes the saga with it, well before its 1 s wake time.
        let b = engine(&path, &bus, "b", &ledger);
        let report = b.recover().await.unwrap();
        assert!(report.resumed.is_empty(), "{name}: {report:?}");
        let outcome = tokio::time::timeout(Duration::from_secs(10), Checkout::on(&b).wait(id))
            .await
            .expect("the saga ended")
            .unwrap();
        service.abort();
        assert!(outcome.is_completed(), "{name}: {outcome:?}");
        assert_eq!(outcome.ctx().shipped.as_deref(), Some("pay-1"), "{name}");
        assert_eq!(charge_history(&b, id, 1).await, (2, false), "{name}");
        assert_eq!(
            charges(&ledger),
            [format!("payments: charge 42 attempt 1 as {id}:charge")],
            "{name}"
        );
    }
}
