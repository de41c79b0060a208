//! What a saga on PostgreSQL costs against the same bookkeeping written by hand.
//!
//! - `saga_concurrent_1000` runs 1,000 sagas of a 3-step saga at once on an engine on
//!   `PostgresStore` (a pool of 16 connections) and waits for all. The runtime writes 4 times per
//!   saga (the saga with its first intent; each completion with the next intent; the last
//!   completion with the end); each write locks the saga's row, checks the fence, updates the
//!   row and appends the history, and the store commits the writes of many sagas together.
//! - `raw_grouped_100` is the best the hand-written side can do with batching: the same 5
//!   statements per saga (insert the row, update it after each step with the context as JSON, a
//!   final update), 100 sagas per transaction, on one connection, keyed by time-ordered ids.
//!
//! - `workers_1`, `workers_2`, `workers_4` enqueue 1,000 sagas from this process (whose engine
//!   runs none) for 1, 2 or 4 worker processes (this program again, as workers) and wait until
//!   all are terminal: sagas per second with more processes on one database.
//! - `pickup` enqueues one saga for a worker engine on a store of its own (its own connections
//!   and `LISTEN`) and times how long until its first step starts; the median and the 99th
//!   percentile of all iterations are printed at the end.
//!
//! Needs `SAGA_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); each side gets a
//! fresh schema, dropped at the end. Throughput is in sagas: one iteration completes 1,000.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::measurement::WallTime;
use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use saga_runtime::store::{PostgresStore, SagaStore};
use saga_runtime::{saga, saga_step, Engine, StepError};

mod common;

use common::{run_sagas, BenchCtx, BenchSaga, GROUP, SAGAS};

/// Set in a worker process this benchmark starts: `URL#SCHEMA`.
const WORKER_ENV: &str = "SAGA_BENCH_WORKER";

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

/// The group of benchmarks whose iterations complete `SAGAS` sagas (throughput in sagas).
fn rounds(c: &mut Criterion, measurement: Duration) -> criterion::BenchmarkGroup<'_, WallTime> {
    let mut group = c.benchmark_group("postgres");
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(SAGAS as u64));
    group.sample_size(10);
    group.measurement_time(measurement);
    group
}

async fn drop_schema(url: &str, schema: &str) {
    connect(url)
        .await
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap()
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
            // Time-ordered keys, as the store's own ids are: random ones would cost the
            // hand-written side its index locality.
            let id = saga_runtime::SagaId::new().to_string();
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

    let mut group = rounds(c, Duration::from_secs(20));
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
    workers(c, &rt, &url, &suffix);
    pickup(c, &rt, &url, &suffix);
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

/// A worker process: runs `BenchSaga`s on the schema until its standard input closes.
fn worker_process(spec: &str) {
    let (url, schema) = spec.split_once('#').expect("URL#SCHEMA");
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    rt.block_on(async {
        let store = PostgresStore::options(url)
            .schema(schema)
            .connect()
            .await
            .expect("the worker's store");
        let engine = Engine::builder()
            .store(store)
            .register::<BenchSaga>(())
            .build();
        engine.recover().await.expect("recovery");
        println!("ready");
        tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines() {})
            .await
            .ok();
    });
}

/// Sagas of `BenchSaga` that are terminal in the store.
async fn terminal(store: &PostgresStore) -> u64 {
    let counts = store.counts().await.expect("counts");
    counts
        .iter()
        .filter(|c| !matches!(c.status.as_str(), "pending" | "running" | "compensating"))
        .map(|c| c.count)
        .sum()
}

/// `SAGAS` sagas enqueued by a client engine for worker processes; waits until all are
/// terminal.
async fn enqueue_and_wait(client: &Engine, store: &PostgresStore) {
    let before = terminal(store).await;
    let tasks: Vec<_> = (0..SAGAS as u64)
        .map(|order| {
            let client = client.clone();
            tokio::spawn(async move {
                let ctx = BenchCtx {
                    order,
                    ..BenchCtx::default()
                };
                BenchSaga::on(&client).request(ctx).enqueue().await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("an enqueue task").expect("enqueued");
    }
    while terminal(store).await < before + SAGAS as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn workers(c: &mut Criterion, rt: &tokio::runtime::Runtime, url: &str, suffix: &str) {
    let mut group = rounds(c, Duration::from_secs(10));
    for count in [1, 2, 4] {
        let schema = format!("bench_workers{count}_{suffix}");
        let store = rt
            .block_on(PostgresStore::options(url).schema(&schema).connect())
            .expect("the client's store");
        let exe = std::env::current_exe().expect("this benchmark's path");
        let mut children: Vec<Child> = (0..count)
            .map(|_| {
                Command::new(&exe)
                    .env(WORKER_ENV, format!("{url}#{schema}"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("a worker process")
            })
            .collect();
        for child in &mut children {
            let stdout = child.stdout.take().expect("piped");
            let ready = std::io::BufReader::new(stdout).lines().next();
            assert!(matches!(ready, Some(Ok(line)) if line == "ready"));
        }
        let client = Engine::builder()
            .store(
                rt.block_on(PostgresStore::options(url).schema(&schema).connect())
                    .expect("the client's store"),
            )
            .claims(false)
            .build();
        group.bench_function(format!("workers_{count}"), |b| {
            b.to_async(rt).iter(|| enqueue_and_wait(&client, &store))
        });
        for mut child in children {
            drop(child.stdin.take());
            child.wait().ok();
        }
        rt.block_on(drop_schema(url, &schema));
    }
    group.finish();
}

/// When `Picked`'s step last started, per the worker.
static PICKED: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Instant>>> = Mutex::new(None);

#[saga_step]
async fn picked(_ctx: &mut BenchCtx) -> Result<(), StepError> {
    if let Some(sender) = &*PICKED.lock().unwrap() {
        let _ = sender.send(Instant::now());
    }
    Ok(())
}

saga! { Picked(BenchCtx, ()) { picked } }

fn pickup(c: &mut Criterion, rt: &tokio::runtime::Runtime, url: &str, suffix: &str) {
    let schema = format!("bench_pickup_{suffix}");
    let (sender, mut started) = tokio::sync::mpsc::unbounded_channel();
    *PICKED.lock().unwrap() = Some(sender);
    let (client, _worker) = rt.block_on(async {
        let schema = &schema;
        let store = |claims| async move {
            let store = PostgresStore::options(url)
                .schema(schema)
                .connect()
                .await
                .expect("a store");
            Engine::builder().store(store).claims(claims)
        };
        let worker = store(true).await.register::<Picked>(()).build();
        worker.recover().await.expect("recovery");
        let client = store(false).await.build();
        // The worker's listener subscribes in the background.
        tokio::time::sleep(Duration::from_millis(500)).await;
        (client, worker)
    });
    let latencies = Mutex::new(Vec::new());
    let mut group = c.benchmark_group("postgres");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("pickup", |b| {
        b.iter_custom(|iterations| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let enqueued = Instant::now();
                    Picked::on(&client)
                        .request(BenchCtx::default())
                        .enqueue()
                        .await
                        .expect("enqueued");
                    let at = started.recv().await.expect("the step started");
                    total += at - enqueued;
                    latencies.lock().unwrap().push(at - enqueued);
                }
                total
            })
        })
    });
    group.finish();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort();
    // None when filtered out on the command line.
    if let Some(max) = latencies.last() {
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        eprintln!(
            "postgres/pickup: {} sagas, enqueue to first step: median {:.2?}, p99 {:.2?}, max \
             {max:.2?}",
            latencies.len(),
            at(0.5),
            at(0.99),
        );
    }
    rt.block_on(drop_schema(url, &schema));
}

criterion_group!(benches, postgres);

fn main() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker_process(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
