//! Durable timers: a retry wait of at least the engine's threshold is a wake time in the store;
//! the worker lets the saga go (no task, no lease) and its background task takes it back when it
//! is due. `run` still returns the outcome; `wait` returns it too.

use std::time::{Duration, Instant};

use saga_runtime::{saga, saga_step, Backoff, Engine, Jitter, SagaEventKind, StepCx, StepError};
use saga_tests::Trail;

/// Fails at its first attempt; the retry waits 300 ms.
#[saga_step(retries = 2, backoff = "300ms", nothing_to_undo)]
async fn flaky(ctx: &mut Trail, cx: &StepCx<()>) -> Result<(), StepError> {
    ctx.push(format!("flaky#{}", cx.attempt()));
    match cx.attempt() {
        1 => Err(StepError::transient("busy")),
        _ => Ok(()),
    }
}

#[saga_step]
async fn done(ctx: &mut Trail) -> Result<(), StepError> {
    ctx.push("done");
    Ok(())
}

saga! { Waits(Trail, ()) { flaky, done } }

fn engine(path: &std::path::Path, threshold: Duration) -> Engine {
    Engine::builder()
        .sqlite(path)
        .unwrap()
        .renew_interval(Duration::from_millis(200))
        .timer_threshold(threshold)
        .backoff(Backoff {
            cap: Duration::from_secs(60),
            jitter: Jitter::None,
        })
        .register::<Waits>(())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_wait_became_a_timer_still_returns_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("sagas.db"), Duration::from_millis(100));
    let started = Instant::now();
    let outcome = Waits::on(&engine).run(Trail::default()).await.unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(outcome.ctx().entries, ["flaky#2", "done"]);
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "fired on time, not at the next renewal: {:?}",
        started.elapsed()
    );
    let history = Waits::on(&engine).history(outcome.id()).await.unwrap();
    assert!(
        history
            .iter()
            .any(|e| matches!(e.kind, SagaEventKind::SagaResumed { .. })),
        "taken back by the background task after the wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_wait_stays_in_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir.path().join("sagas.db"), Duration::from_secs(1));
    let outcome = Waits::on(&engine).run(Trail::default()).await.unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    let history = Waits::on(&engine).history(outcome.id()).await.unwrap();
    assert!(
        !history
            .iter()
            .any(|e| matches!(e.kind, SagaEventKind::SagaResumed { .. })),
        "300 ms is under the threshold: no round trip through the store"
    );
}
