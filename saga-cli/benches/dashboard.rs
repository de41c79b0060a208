//! The dashboard on a SQLite store of 100,000 sagas (97,000 completed, 2,000 compensated, 500
//! running, 500 waiting on a durable timer): how long `saga web` takes to answer with the
//! overview, a filtered list page and a saga page, measured over HTTP from another process as a
//! browser would see it.
//!
//! `cargo bench -p saga-cli --bench dashboard`

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use saga_runtime::{saga, saga_step, Engine, SagaId, StepError};
use serde::{Deserialize, Serialize};

#[path = "../tests/support/server.rs"]
#[allow(dead_code)]
mod server;

#[derive(Clone, Default, Serialize, Deserialize)]
struct Ctx {
    n: u64,
    fail: bool,
    hang: bool,
}

/// Running sagas hang in `reserve` until this is cleared.
static HANG: AtomicBool = AtomicBool::new(true);

#[saga_step(compensate = release)]
async fn reserve(ctx: &mut Ctx) -> Result<(), StepError> {
    while ctx.hang && HANG.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn release(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn charge(ctx: &mut Ctx) -> Result<(), StepError> {
    match ctx.fail {
        true => Err(StepError::permanent("card declined")),
        false => Ok(()),
    }
}

saga! { Orders(Ctx, ()) { reserve, charge } }

#[saga_step(retries = 1, backoff = "30s")]
async fn settle(_ctx: &mut Ctx) -> Result<(), StepError> {
    Err(StepError::transient("the bank is closed"))
}

saga! { Settlements(Ctx, ()) { settle } }

/// Runs `count` sagas made by `ctx`, a thousand at a time.
async fn fill(engine: &Engine, count: u64, ctx: impl Fn(u64) -> Ctx, run: bool) -> Vec<SagaId> {
    let mut ids = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1_000) {
        let mut set = tokio::task::JoinSet::new();
        for &n in chunk {
            let client = Orders::on(engine);
            let ctx = ctx(n);
            set.spawn(async move {
                match run {
                    true => client.run(ctx).await.map(|o| o.id()),
                    false => client.start(ctx).await,
                }
            });
        }
        while let Some(id) = set.join_next().await {
            ids.push(id.unwrap().unwrap());
        }
    }
    ids
}

fn dashboard(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = runtime.block_on(async {
        let engine = Engine::builder()
            .sqlite(&path)
            .unwrap()
            .register::<Orders>(())
            .register::<Settlements>(())
            .build();
        let started = Instant::now();
        fill(
            &engine,
            97_000,
            |n| Ctx {
                n,
                ..Ctx::default()
            },
            true,
        )
        .await;
        let compensated = fill(
            &engine,
            2_000,
            |n| Ctx {
                n,
                fail: true,
                hang: false,
            },
            true,
        )
        .await;
        fill(
            &engine,
            500,
            |n| Ctx {
                n,
                fail: false,
                hang: true,
            },
            false,
        )
        .await;
        for n in 0..500 {
            Settlements::on(&engine)
                .start(Ctx {
                    n,
                    ..Ctx::default()
                })
                .await
                .unwrap();
        }
        eprintln!(
            "filled a store with 100,000 sagas in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        (engine, compensated[0])
    });
    let (engine, compensated) = engine;
    let web = server::serve(&path, &[]);
    let overview = web.get("/");
    assert_eq!(overview.status, 200);
    assert!(
        overview
            .body
            .contains("<span class=\"count\">100000</span>"),
        "every saga counted"
    );
    let mut group = c.benchmark_group("dashboard_100k_sagas");
    group.sample_size(20);
    group.bench_function("overview", |b| b.iter(|| web.get("/")));
    group.bench_function("list_compensated", |b| {
        b.iter(|| web.get("/sagas?status=compensated"))
    });
    let saga_page = format!("/sagas/{compensated}");
    group.bench_function("saga_page", |b| b.iter(|| web.get(&saga_page)));
    group.finish();
    HANG.store(false, Ordering::Relaxed);
    drop(web);
    runtime.block_on(async { drop(engine) });
}

criterion_group!(benches, dashboard);
criterion_main!(benches);
