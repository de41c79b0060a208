//! A parallel group against the same steps in sequence and against hand-written concurrency.
//!
//! Each saga runs three steps that each wait 10 ms (a remote call): `group` runs them as a
//! parallel group, `sequence` one after another, and `join` is the hand-written equivalent of
//! the group, `tokio::join!` of the three waits. In memory, one saga after another.
//!
//! `cargo bench -p saga-runtime --bench groups`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use saga_runtime::{saga, saga_step, Engine, StepError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ctx;

async fn remote_call() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[saga_step(nothing_to_undo)]
async fn flight(_ctx: &Ctx) -> Result<(), StepError> {
    remote_call().await;
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn hotel(_ctx: &Ctx) -> Result<(), StepError> {
    remote_call().await;
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn car(_ctx: &Ctx) -> Result<(), StepError> {
    remote_call().await;
    Ok(())
}

saga! { Group(Ctx, ()) { parallel(flight, hotel, car) } }
saga! { Sequence(Ctx, ()) { flight, hotel, car } }

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::in_memory();
    let mut group = c.benchmark_group("three 10 ms steps");
    group.sample_size(20);
    group.bench_function("join (hand-written)", |b| {
        b.to_async(&rt).iter(|| async {
            tokio::join!(remote_call(), remote_call(), remote_call());
        })
    });
    group.bench_function("group", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = Group::on(&engine).run(Ctx).await.unwrap();
            assert!(outcome.is_completed());
        })
    });
    group.bench_function("sequence", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = Sequence::on(&engine).run(Ctx).await.unwrap();
            assert!(outcome.is_completed());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
