//! What a saga on PostgreSQL costs against the same bookkeeping written by hand.
//!
//! - `saga_concurrent_1000` runs 1,000 sagas of a 3-step saga at once on an engine on
//!   `PostgresStore` (a pool of 16 connections) and waits for all. The runtime writes 4 times per
//!   saga (the saga with its first intent; each completion with the next intent; the last
//!   completion with the end); each write locks the saga's row, checks the fence, updates the
//!   row and appends the history, and the store commits the writes of many sagas together.
//! - `raw_grouped_100` is the best the hand-written side can do with batching: the same 5
//!   statements per saga (insert the row, update it after each step with the context as JSON, a
//!   final update), 100 sagas per transaction, on one connection.
//!
//! Needs `SAGA_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); each side gets a
//! fresh schema, dropped at the end. Throughput is in sagas: one iteration completes 1,000.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use saga_runtime::store::PostgresStore;
use saga_runtime::Engine;

mod common;

use common::{run_sagas, BenchCtx, GROUP, SAGAS};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL at SAGA_POSTGRES_URL");
    tokio::spawn(connection);
    client
}

/// `SAGAS` sagas by hand, `GROUP` per transaction, 5 statements each.
async fn raw_grouped(client: &mut tokio_postgres::Client, schema: &str) {
    let insert = client
        .prepare(&format!(
            "INSERT INTO {schema}.sagas (id, saga_type, status, step, context, created_at,
                                         updated_at)
             VALUES ($1, 'BenchSaga', 'running', 0, $2, $3, $3)"
        ))
        .await
        .unwrap();
    let step = client
        .prepare(&format!(
            "UPDATE {schema}.sagas SET status = 'running', step = $2, context = $3,
                 updated_at = $4 WHERE id = $1"
        ))
        .await
        .unwrap();
    let end = client
        .prepare(&format!(
            "UPDATE {schema}.sagas SET status = 'completed', updated_at = $2 WHERE id = $1"
        ))
        .await
        .unwrap();
    for group in 0..SAGAS / GROUP {
        let tx = client.transaction().await.unwrap();
        for i in 0..GROUP {
            let id = uuid::Uuid::new_v4().to_string();
            let mut ctx = BenchCtx {
                order: (group * GROUP + i) as u64,
                ..BenchCtx::default()
            };
            let json = serde_json::to_string(&ctx).unwrap();
            tx.execute(&insert, &[&id, &json, &now()]).await.unwrap();
            for n in 0..3i64 {
                match n {
                    0 => ctx.a = 1,
                    1 => ctx.b = 2,
                    _ => ctx.c = 3,
                }
                let json = serde_json::to_string(&ctx).unwrap();
                let changed = tx
                    .execute(&step, &[&id, &(n + 1), &json, &now()])
                    .await
                    .unwrap();
                assert_eq!(changed, 1);
            }
            tx.execute(&end, &[&id, &now()]).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
}

fn postgres(c: &mut Criterion) {
    let Ok(url) = std::env::var("SAGA_POSTGRES_URL") else {
        eprintln!("SKIPPED: the PostgreSQL benchmark needs SAGA_POSTGRES_URL");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (saga_schema, raw_schema) = (
        format!("bench_saga_{suffix}"),
        format!("bench_raw_{suffix}"),
    );

    let mut group = c.benchmark_group("postgres");
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(SAGAS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    {
        let store = rt.block_on(PostgresStore::options(&url).schema(&saga_schema).connect());
        let engine = Engine::builder().store(store.unwrap()).build();
        rt.block_on(run_sagas(&engine));
        group.bench_function("saga_concurrent_1000", |b| {
            b.to_async(&rt).iter(|| run_sagas(&engine))
        });
    }
    {
        let client = rt.block_on(connect(&url));
        rt.block_on(client.batch_execute(&format!(
            "CREATE SCHEMA {raw_schema};
             CREATE TABLE {raw_schema}.sagas (
                 id         TEXT PRIMARY KEY,
                 saga_type  TEXT NOT NULL,
                 status     TEXT NOT NULL,
                 step       BIGINT NOT NULL,
                 context    TEXT NOT NULL,
                 created_at BIGINT NOT NULL,
                 updated_at BIGINT NOT NULL
             );"
        )))
        .unwrap();
        // Behind an async lock only so that each iteration's future may borrow it mutably.
        let client = tokio::sync::Mutex::new(client);
        group.bench_function("raw_grouped_100", |b| {
            b.to_async(&rt).iter(|| async {
                let mut client = client.lock().await;
                raw_grouped(&mut client, &raw_schema).await
            })
        });
    }
    group.finish();
    rt.block_on(async {
        let client = connect(&url).await;
        client
            .batch_execute(&format!(
                "DROP SCHEMA {saga_schema} CASCADE; DROP SCHEMA {raw_schema} CASCADE;"
            ))
            .await
            .unwrap();
    });
}

criterion_group!(benches, postgres);
criterion_main!(benches);
