//! What the saga runtime costs over the same logic written by hand.
//!
//! Both sides run a 3-step process whose steps do no work beyond writing one field of the
//! context, with the same semantics:
//!
//! - every attempt runs under `tokio::time::timeout` (5 s);
//! - each step has 3 attempts (`retries = 2`), retrying only retryable errors, with no wait
//!   between them (`backoff = "0s"`);
//! - each attempt starts from a copy of the last committed context; a failed attempt's changes
//!   are discarded;
//! - when a step fails for good, the completed steps are compensated latest first, each
//!   compensation under the same timeout and with its own retry loop (5 attempts, the runtime's
//!   default `compensation_retries = 4`).
//!
//! `saga_*` runs `BenchSaga` on a dedicated `Engine::in_memory()` (not the global engine), with
//! no tracing subscriber and no event subscriber, so it pays for what every saga pays for: the
//! store record, one history event per transition, the `tracing` callsites and span. `*_ok`
//! completes all three steps; `*_compensated` has the third step fail with a permanent error, so
//! the first two are compensated in reverse order.
//!
//! Both sides run on the same current-thread tokio runtime and return the final context.

use std::future::Future;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use saga_runtime::{saga, saga_step, Engine, SagaOutcome, StepError};
use serde::{Deserialize, Serialize};

const TIMEOUT: Duration = Duration::from_secs(5);
const ACTION_ATTEMPTS: u32 = 3;
const COMPENSATION_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BenchCtx {
    /// Makes the third step fail for good.
    fail_last: bool,
    a: u64,
    b: u64,
    c: u64,
}

impl BenchCtx {
    fn new(fail_last: bool) -> Self {
        BenchCtx {
            fail_last,
            ..BenchCtx::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The saga.

#[saga_step(compensate = undo_a, timeout = "5s", retries = 2, backoff = "0s")]
async fn step_a(ctx: &mut BenchCtx) -> Result<(), StepError> {
    ctx.a = 1;
    Ok(())
}

async fn undo_a(ctx: &mut BenchCtx) -> Result<(), StepError> {
    ctx.a = 0;
    Ok(())
}

#[saga_step(compensate = undo_b, timeout = "5s", retries = 2, backoff = "0s")]
async fn step_b(ctx: &mut BenchCtx) -> Result<(), StepError> {
    ctx.b = 2;
    Ok(())
}

async fn undo_b(ctx: &mut BenchCtx) -> Result<(), StepError> {
    ctx.b = 0;
    Ok(())
}

#[saga_step(timeout = "5s", retries = 2, backoff = "0s")]
async fn step_c(ctx: &mut BenchCtx) -> Result<(), StepError> {
    if ctx.fail_last {
        return Err(StepError::permanent("declined"));
    }
    ctx.c = 3;
    Ok(())
}

saga! {
    BenchSaga(BenchCtx, ()) {
        step_a,
        step_b,
        step_c,
    }
}

async fn run_saga(engine: &Engine, fail_last: bool) -> BenchCtx {
    match BenchSaga::on(engine).run(BenchCtx::new(fail_last)).await {
        Ok(SagaOutcome::Completed { ctx, .. }) if !fail_last => ctx,
        Ok(SagaOutcome::Compensated { ctx, .. }) if fail_last => ctx,
        other => panic!("unexpected outcome {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The same by hand.

#[derive(Debug)]
#[allow(dead_code)] // The messages are for `Debug`; no step here fails transiently.
enum HandError {
    Transient(&'static str),
    Permanent(&'static str),
    Timeout,
}

impl HandError {
    fn is_retryable(&self) -> bool {
        matches!(self, HandError::Transient(_) | HandError::Timeout)
    }
}

async fn hand_a(ctx: &mut BenchCtx) -> Result<(), HandError> {
    ctx.a = 1;
    Ok(())
}

async fn hand_undo_a(ctx: &mut BenchCtx) -> Result<(), HandError> {
    ctx.a = 0;
    Ok(())
}

async fn hand_b(ctx: &mut BenchCtx) -> Result<(), HandError> {
    ctx.b = 2;
    Ok(())
}

async fn hand_undo_b(ctx: &mut BenchCtx) -> Result<(), HandError> {
    ctx.b = 0;
    Ok(())
}

async fn hand_c(ctx: &mut BenchCtx) -> Result<(), HandError> {
    if ctx.fail_last {
        return Err(HandError::Permanent("declined"));
    }
    ctx.c = 3;
    Ok(())
}

/// Runs `f` up to `attempts` times, each under the timeout and on a copy of `ctx`; commits the
/// copy of the attempt that succeeds. Retries only retryable errors, with no wait.
async fn with_retries<F>(ctx: &mut BenchCtx, attempts: u32, mut f: F) -> Result<(), HandError>
where
    F: AsyncFnMut(&mut BenchCtx) -> Result<(), HandError>,
{
    let mut attempt = 1;
    loop {
        let mut work = ctx.clone();
        let error = match tokio::time::timeout(TIMEOUT, f(&mut work)).await {
            Ok(Ok(())) => {
                *ctx = work;
                return Ok(());
            }
            Ok(Err(error)) => error,
            Err(_) => HandError::Timeout,
        };
        if !error.is_retryable() || attempt >= attempts {
            return Err(error);
        }
        attempt += 1;
    }
}

/// The whole process: the final context, or the error of the step that failed for good and the
/// context after compensation.
async fn handwritten(mut ctx: BenchCtx) -> Result<BenchCtx, (HandError, BenchCtx)> {
    // Steps completed so far, for the rollback.
    let mut completed = 0;
    let error = 'forward: {
        if let Err(e) = with_retries(&mut ctx, ACTION_ATTEMPTS, hand_a).await {
            break 'forward e;
        }
        completed += 1;
        if let Err(e) = with_retries(&mut ctx, ACTION_ATTEMPTS, hand_b).await {
            break 'forward e;
        }
        completed += 1;
        if let Err(e) = with_retries(&mut ctx, ACTION_ATTEMPTS, hand_c).await {
            break 'forward e;
        }
        return Ok(ctx);
    };
    // Reverse compensation; stop at the first compensation that fails for good.
    if completed >= 2 {
        if let Err(e) = with_retries(&mut ctx, COMPENSATION_ATTEMPTS, hand_undo_b).await {
            panic!("compensation failed: {e:?}");
        }
    }
    if completed >= 1 {
        if let Err(e) = with_retries(&mut ctx, COMPENSATION_ATTEMPTS, hand_undo_a).await {
            panic!("compensation failed: {e:?}");
        }
    }
    Err((error, ctx))
}

async fn run_handwritten(fail_last: bool) -> BenchCtx {
    match handwritten(BenchCtx::new(fail_last)).await {
        Ok(ctx) if !fail_last => ctx,
        Err((HandError::Permanent(_), ctx)) if fail_last => ctx,
        other => panic!("unexpected outcome {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------

fn check<F: Future<Output = BenchCtx>>(
    rt: &tokio::runtime::Runtime,
    f: F,
    expect: (u64, u64, u64),
) {
    let ctx = rt.block_on(f);
    assert_eq!((ctx.a, ctx.b, ctx.c), expect);
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let engine = Engine::in_memory();

    // Both sides do what they claim.
    check(&rt, run_saga(&engine, false), (1, 2, 3));
    check(&rt, run_handwritten(false), (1, 2, 3));
    check(&rt, run_saga(&engine, true), (0, 0, 0));
    check(&rt, run_handwritten(true), (0, 0, 0));

    let mut group = c.benchmark_group("overhead");
    group.bench_function("saga_ok", |b| {
        b.to_async(&rt).iter(|| run_saga(&engine, false))
    });
    group.bench_function("handwritten_ok", |b| {
        b.to_async(&rt).iter(|| run_handwritten(false))
    });
    group.bench_function("saga_compensated", |b| {
        b.to_async(&rt).iter(|| run_saga(&engine, true))
    });
    group.bench_function("handwritten_compensated", |b| {
        b.to_async(&rt).iter(|| run_handwritten(true))
    });
    group.finish();
}

/// `OVERHEAD_SAGAS=N` runs N sagas of each kind once and exits, for instruction counts under
/// `valgrind --tool=callgrind` (repeatable where times are not): with and without the
/// `metrics` feature, for instance. Otherwise, the criterion benchmarks.
fn main() {
    if let Some(sagas) = std::env::var("OVERHEAD_SAGAS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        let engine = Engine::in_memory();
        for fail_last in [false, true] {
            for _ in 0..sagas {
                rt.block_on(run_saga(&engine, fail_last));
            }
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

criterion_group!(benches, overhead);
