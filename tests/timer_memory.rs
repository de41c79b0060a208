//! Durable timers and memory: sagas waiting in backoff hold no run in the worker when their waits
//! are durable timers, so the memory a worker holds follows the steps running, not the sagas
//! waiting. Measured with a counting allocator (this test binary's own), against the same sagas
//! waiting in their tasks.
//!
//! The figures in the README: `cargo test --release -p saga-tests --test timer_memory --
//! --ignored --nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use saga_runtime::store::{Durability, SagaQuery, SagaStore, SqliteStore};
use saga_runtime::{saga, saga_step, Backoff, Engine, Jitter, RollbackCause, StepCx, StepError};
use saga_tests::Trail;

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[saga_step]
async fn done(ctx: &mut Trail) -> Result<(), StepError> {
    ctx.push("done");
    Ok(())
}

/// Fails at its first attempt; the retry waits ten minutes.
#[saga_step(retries = 2, backoff = "10m", nothing_to_undo)]
async fn patient(ctx: &mut Trail, cx: &StepCx<()>) -> Result<(), StepError> {
    ctx.push(format!("patient#{}", cx.attempt()));
    match cx.attempt() {
        1 => Err(StepError::transient("busy")),
        _ => Ok(()),
    }
}

saga! { LongWaits(Trail, ()) { patient, done } }

/// `n` sagas wait ten minutes in backoff on one engine: none holds a run or a lease while it waits.
/// Returns the growth of the process's resident memory from before the first start to when all
/// wait, in KiB, and how long starting them took; then, with `cancel`, an operator cancels them
/// all, which wakes each at once, and each ends compensated.
async fn waiting_sagas(n: usize, durable: bool) -> (i64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let threshold = match durable {
        true => saga_runtime::EngineBuilder::DEFAULT_TIMER_THRESHOLD,
        false => Duration::from_secs(3600),
    };
    let engine = Engine::builder()
        .sqlite_with(&path, Durability::Off)
        .unwrap()
        .timer_threshold(threshold)
        .backoff(Backoff {
            cap: Duration::from_secs(3600),
            jitter: Jitter::None,
        })
        .register::<LongWaits>(())
        .build();
    let before = LIVE.load(Ordering::Relaxed);
    let client = LongWaits::on(&engine);
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(1000) {
        let starts = (0..1000.min(n - chunk * 1000)).map(|_| client.start(Trail::default()));
        for id in futures_util::future::join_all(starts).await {
            ids.push(id.unwrap());
        }
    }
    let start_time = started.elapsed();
    // Every saga's first attempt failed and was recorded; then each waits for its retry.
    let store = SqliteStore::open(&path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let waiting = match durable {
            true => engine.running_sagas() == 0,
            false => retries_scheduled(&store, n).await,
        };
        if waiting {
            break;
        }
        assert!(Instant::now() < deadline, "not all waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = LIVE.load(Ordering::Relaxed) as i64 - before as i64;
    let all = store.list(SagaQuery::new().limit(n)).await.unwrap();
    assert_eq!(all.len(), n);
    assert!(all.iter().all(|s| s.status.name() == "running"));
    match durable {
        true => {
            assert!(
                all.iter().all(|s| s.owner.is_none()),
                "every saga waits, held by no worker"
            );
            assert_eq!(engine.running_sagas(), 0);
        }
        false => assert_eq!(engine.running_sagas(), n, "each waits in its task"),
    }
    // An operator cancels them all: each is woken at once (a durable timer is due now) and
    // rolls back.
    for &id in &ids {
        engine
            .cancel(id)
            .await
            .expect("a waiting saga can be cancelled");
    }
    for id in ids {
        let outcome = client.wait(id).await.unwrap();
        assert_eq!(
            outcome.cause(),
            Some(&RollbackCause::Cancelled),
            "{outcome:?}"
        );
    }
    (held, start_time)
}

/// Whether all `n` sagas recorded their first attempt's failure.
async fn retries_scheduled(store: &SqliteStore, n: usize) -> bool {
    let all = store.list(SagaQuery::new().limit(n)).await.unwrap();
    let mut scheduled = 0;
    for saga in all {
        let history = store.history(saga.id, 0, 10).await.unwrap().unwrap();
        let retrying = history
            .iter()
            .any(|e| matches!(e.kind, saga_runtime::SagaEventKind::RetryScheduled { .. }));
        scheduled += usize::from(retrying);
    }
    scheduled == n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_waiting_on_durable_timers_hold_no_runs() {
    let started = Instant::now();
    let (held, _) = waiting_sagas(2_000, true).await;
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "cancelled, not left to their ten minutes of backoff"
    );
    let (in_tasks, _) = waiting_sagas(2_000, false).await;
    eprintln!(
        "2,000 sagas waiting in backoff hold {held} bytes as durable timers, {in_tasks} bytes \
         waiting in their tasks"
    );
}

/// The measurement the README reports (see the module docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 100,000 sagas twice, a few minutes"]
async fn a_hundred_thousand_sagas_waiting_in_backoff() {
    const N: i64 = 100_000;
    let (held, took) = waiting_sagas(N as usize, true).await;
    eprintln!(
        "{N} sagas waiting in backoff as durable timers (started in {took:?}): {held} bytes \
         held ({} per waiting saga)",
        held / N
    );
    let (in_tasks, took) = waiting_sagas(N as usize, false).await;
    eprintln!(
        "{N} sagas waiting in backoff in their tasks (started in {took:?}): {in_tasks} bytes \
         held ({} per waiting saga)",
        in_tasks / N
    );
}
