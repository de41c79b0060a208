//! Many sagas in flight at once, in memory, against hand-written tokio code doing the same:
//! throughput, and bytes per saga while they wait.
//!
//! Each saga has 3 steps that sleep 10 ms and write one field of the context (a stand-in for a
//! network call). The hand-written side does what the runtime guarantees for such a saga, as
//! `overhead` does: each attempt under `tokio::time::timeout`, on a copy of the last committed
//! context.
//!
//! - `concurrency/saga_10000`, `concurrency/handwritten_10000`: 10,000 started at once on a
//!   2-thread runtime, until all completed; throughput in sagas.
//! - Memory: 100,000 started at once with steps that sleep 2 s, the heap measured (a counting
//!   allocator) once all are asleep in their first step, less the heap before; printed as bytes
//!   per saga for both sides before the criterion benchmarks run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use saga_runtime::{saga, saga_step, Engine, SagaOutcome, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// Counts the bytes allocated now.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SleepCtx {
    a: u64,
    b: u64,
    c: u64,
}

/// How long each step sleeps.
struct Nap(Duration);

#[saga_step(compensate = undo_a, timeout = "5s")]
async fn nap_a(ctx: &mut SleepCtx, cx: &StepCx<Nap>) -> Result<(), StepError> {
    tokio::time::sleep(cx.deps().0).await;
    ctx.a = 1;
    Ok(())
}

async fn undo_a(ctx: &mut SleepCtx, _cx: &StepCx<Nap>) -> Result<(), StepError> {
    ctx.a = 0;
    Ok(())
}

#[saga_step(compensate = undo_b, timeout = "5s")]
async fn nap_b(ctx: &mut SleepCtx, cx: &StepCx<Nap>) -> Result<(), StepError> {
    tokio::time::sleep(cx.deps().0).await;
    ctx.b = 2;
    Ok(())
}

async fn undo_b(ctx: &mut SleepCtx, _cx: &StepCx<Nap>) -> Result<(), StepError> {
    ctx.b = 0;
    Ok(())
}

#[saga_step(timeout = "5s")]
async fn nap_c(ctx: &mut SleepCtx, cx: &StepCx<Nap>) -> Result<(), StepError> {
    tokio::time::sleep(cx.deps().0).await;
    ctx.c = 3;
    Ok(())
}

saga! { SleepSaga(SleepCtx, Nap) { nap_a, nap_b, nap_c } }

async fn saga_once(engine: Engine, nap: std::sync::Arc<Nap>) {
    match SleepSaga::on(&engine)
        .request(SleepCtx::default())
        .deps(nap)
        .run()
        .await
    {
        Ok(SagaOutcome::Completed { ctx, .. }) => assert_eq!((ctx.a, ctx.b, ctx.c), (1, 2, 3)),
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// The same by hand: each step under a timeout, on a copy of the committed context.
async fn handwritten_once(nap: Duration) {
    let mut committed = SleepCtx::default();
    for step in 0..3 {
        let mut work = committed.clone();
        let attempt = async {
            tokio::time::sleep(nap).await;
            match step {
                0 => work.a = 1,
                1 => work.b = 2,
                _ => work.c = 3,
            }
        };
        tokio::time::timeout(TIMEOUT, attempt)
            .await
            .expect("no step times out");
        committed = work;
    }
    assert_eq!((committed.a, committed.b, committed.c), (1, 2, 3));
}

/// Starts `n` of `one` at once and waits for all.
async fn all<F: std::future::Future<Output = ()> + Send + 'static>(n: usize, one: impl Fn() -> F) {
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(one())).collect();
    for task in tasks {
        task.await.expect("a task panicked");
    }
}

/// The heap per task of `n` started at once, measured once all are asleep in their first step.
fn bytes_per_saga<F: std::future::Future<Output = ()> + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    n: usize,
    one: impl Fn() -> F,
) -> usize {
    let before = ALLOCATED.load(Ordering::Relaxed);
    let tasks: Vec<_> = rt.block_on(async {
        let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(one())).collect();
        // Long enough for every task to reach its first sleep, well short of its end.
        tokio::time::sleep(Duration::from_millis(700)).await;
        tasks
    });
    let during = ALLOCATED.load(Ordering::Relaxed);
    rt.block_on(async {
        for task in tasks {
            task.await.expect("a task panicked");
        }
    });
    // The vector of join handles is the harness's, not the tasks'.
    (during.saturating_sub(before))
        .saturating_sub(n * std::mem::size_of::<tokio::task::JoinHandle<()>>())
        / n
}

fn concurrency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let engine = Engine::in_memory();

    // The future a run is, before it is polled (every spawned saga's task holds one).
    let future = SleepSaga::on(&engine)
        .request(SleepCtx::default())
        .deps(std::sync::Arc::new(Nap(Duration::ZERO)))
        .run();
    println!(
        "concurrency/future: a run's future is {} B; the handwritten one {} B",
        std::mem::size_of_val(&future),
        std::mem::size_of_val(&handwritten_once(Duration::ZERO))
    );
    drop(future);

    // Memory: 100,000 in flight (`CONCURRENCY_IN_FLIGHT` to change it, for a heap profiler).
    let in_flight = std::env::var("CONCURRENCY_IN_FLIGHT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let long = std::sync::Arc::new(Nap(Duration::from_secs(2)));
    let saga_bytes = bytes_per_saga(&rt, in_flight, || saga_once(engine.clone(), long.clone()));
    let hand_bytes = bytes_per_saga(&rt, in_flight, || handwritten_once(Duration::from_secs(2)));
    println!(
        "concurrency/memory: {in_flight} in flight: saga {saga_bytes} B a saga, handwritten \
         {hand_bytes} B a task ({:.1}x)",
        saga_bytes as f64 / hand_bytes.max(1) as f64
    );

    const AT_ONCE: usize = 10_000;
    let short = std::sync::Arc::new(Nap(Duration::from_millis(10)));
    let mut group = c.benchmark_group("concurrency");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(AT_ONCE as u64));
    group.bench_function("saga_10000", |b| {
        b.to_async(&rt)
            .iter(|| all(AT_ONCE, || saga_once(engine.clone(), short.clone())))
    });
    group.bench_function("handwritten_10000", |b| {
        b.to_async(&rt)
            .iter(|| all(AT_ONCE, || handwritten_once(Duration::from_millis(10))))
    });
    group.finish();
}

criterion_group!(benches, concurrency);

/// `CONCURRENCY_ONCE=saga` (or `handwritten`) runs one round of 10,000 and exits, for
/// `valgrind --tool=callgrind`. Otherwise, the memory figures and the criterion benchmarks.
fn main() {
    if let Ok(side) = std::env::var("CONCURRENCY_ONCE") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let engine = Engine::in_memory();
        let nap = std::sync::Arc::new(Nap(Duration::from_millis(10)));
        match side.as_str() {
            "saga" => rt.block_on(all(10_000, || saga_once(engine.clone(), nap.clone()))),
            _ => rt.block_on(all(10_000, || handwritten_once(Duration::from_millis(10)))),
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
