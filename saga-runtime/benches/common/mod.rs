//! The saga the durable benchmarks run (on SQLite and on PostgreSQL), and how they run it: a
//! 3-step saga whose steps write one field of a small context each.

use saga_runtime::{saga, saga_step, Engine, SagaOutcome, StepError};
use serde::{Deserialize, Serialize};

/// Sagas per iteration of the concurrent and grouped benches.
pub const SAGAS: usize = 1000;
/// Sagas per transaction in `raw_grouped_100`.
pub const GROUP: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BenchCtx {
    pub order: u64,
    pub a: u64,
    pub b: u64,
    pub c: u64,
}

#[saga_step(compensate = undo_a)]
async fn step_a(ctx: &mut BenchCtx) -> Result<(), StepError> {
    ctx.a = 1;
    Ok(())
}

async fn undo_a(ctx: &mut BenchCtx) -> Result<(), StepError> {
    ctx.a = 0;
    Ok(())
}

#[saga_step(compensate = undo_b)]
async fn step_b(ctx: &mut BenchCtx) -> Result<(), StepError> {
    ctx.b = 2;
    Ok(())
}

async fn undo_b(ctx: &mut BenchCtx) -> Result<(), StepError> {
    ctx.b = 0;
    Ok(())
}

#[saga_step]
async fn step_c(ctx: &mut BenchCtx) -> Result<(), StepError> {
    ctx.c = 3;
    Ok(())
}

saga! {
    pub BenchSaga(BenchCtx, ()) {
        step_a,
        step_b,
        step_c,
    }
}

pub async fn run_saga(engine: Engine, order: u64) {
    match BenchSaga::on(&engine)
        .run(BenchCtx {
            order,
            ..BenchCtx::default()
        })
        .await
    {
        Ok(SagaOutcome::Completed { ctx, .. }) => {
            assert_eq!((ctx.order, ctx.a, ctx.b, ctx.c), (order, 1, 2, 3))
        }
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Runs `SAGAS` sagas at once, each in its own task, and waits for all.
pub async fn run_sagas(engine: &Engine) {
    let tasks: Vec<_> = (0..SAGAS as u64)
        .map(|order| tokio::spawn(run_saga(engine.clone(), order)))
        .collect();
    for task in tasks {
        task.await.expect("a saga task panicked");
    }
}
