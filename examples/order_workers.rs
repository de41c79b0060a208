//! The order saga on PostgreSQL, run by worker processes:
//!
//! ```text
//! cargo run --example order_saga -- --postgres URL --workers 3 [--orders 30] [--schema NAME]
//! ```
//!
//! This process starts the workers (this same program with `--worker NAME`), enqueues the
//! orders (it runs none: its engine does not claim), waits until the workers have completed
//! them, and reports which worker ran each and how many orders a second they completed. Each
//! worker registers `OrderSaga` with its own services, takes enqueued orders as the database
//! notifies it, and would take over the orders of a worker that died once its lease expired.

use std::io::{BufRead, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use saga_runtime::store::{PostgresStore, SagaStore};
use saga_runtime::{Engine, SagaError};

use super::{OrderCtx, OrderSaga, Services};

/// The value after `flag`, if given.
fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

fn number(args: &[String], flag: &str, default: usize) -> Result<usize, SagaError> {
    match value(args, flag) {
        None => Ok(default),
        Some(n) => n.parse().map_err(|_| {
            SagaError::Store(saga_runtime::store::StoreError::new(
                saga_runtime::store::StoreErrorKind::Invalid,
                format!("{flag} takes a number, not `{n}`"),
            ))
        }),
    }
}

/// `--postgres URL` is `args[at]`: a worker (`--worker NAME`) or the process that starts them.
pub async fn main(args: &[String], at: usize) -> Result<(), SagaError> {
    let Some(url) = args.get(at + 1) else {
        eprintln!("usage: order_saga --postgres URL [--workers N] [--orders N] [--schema NAME]");
        std::process::exit(2);
    };
    let schema = value(args, "--schema").unwrap_or("order_saga");
    let store = PostgresStore::options(url).schema(schema).connect().await?;
    match value(args, "--worker") {
        Some(name) => worker(store, name, args.iter().any(|a| a == "--quiet")).await,
        None => {
            let workers = number(args, "--workers", 3)?;
            let orders = number(args, "--orders", 30)?;
            coordinate(store, url, schema, workers, orders).await
        }
    }
}

/// A worker process: runs orders until its standard input closes.
async fn worker(store: PostgresStore, name: &str, quiet: bool) -> Result<(), SagaError> {
    let services = Services {
        worker: Some(name.to_owned()),
        quiet,
        ..Services::default()
    };
    let engine = Engine::builder()
        .store(store)
        .worker_id(name)
        .register::<OrderSaga>(services)
        .build();
    engine.recover().await?;
    println!("[{name}] ready");
    // The process that started it closes the pipe when the orders are done.
    tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines() {})
        .await
        .ok();
    Ok(())
}

/// Starts the workers, enqueues the orders, waits for them, reports.
async fn coordinate(
    store: PostgresStore,
    url: &str,
    schema: &str,
    workers: usize,
    orders: usize,
) -> Result<(), SagaError> {
    let quiet = orders > 12;
    let exe = std::env::current_exe().expect("this program's path");
    let mut children: Vec<Child> = (1..=workers)
        .map(|i| {
            let mut command = Command::new(&exe);
            command
                .args(["--postgres", url, "--schema", schema])
                .args(["--worker", &format!("worker-{i}")])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            if quiet {
                command.arg("--quiet");
            }
            command.spawn().expect("a worker process starts")
        })
        .collect();
    // Each worker says when it is ready; its later lines are passed on as they come.
    for child in &mut children {
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = lines.next().and_then(Result::ok).unwrap_or_default();
        println!("{ready}");
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                println!("{line}");
            }
        });
    }
    // Terminal sagas before this run's, so that a database used before still counts right.
    let terminal = |counts: Vec<saga_runtime::store::StatusCount>| -> u64 {
        counts
            .iter()
            .filter(|c| c.saga_type == "OrderSaga")
            .filter(|c| !matches!(c.status.as_str(), "pending" | "running" | "compensating"))
            .map(|c| c.count)
            .sum()
    };
    let before = terminal(store.counts().await?);
    let client = Engine::builder().store(store).claims(false).build();
    println!("enqueueing {orders} orders for {workers} worker processes");
    let started = Instant::now();
    let enqueued: Vec<_> = (0..orders)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let ctx = OrderCtx {
                    order_id: format!("order-{i}"),
                    amount_cents: 1_000 + i as u64,
                    ..OrderCtx::default()
                };
                OrderSaga::on(&client).request(ctx).enqueue().await
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(orders);
    for task in enqueued {
        ids.push(task.await.expect("an enqueue task")?);
    }
    // Every order terminal: counted, rather than each waited for, so that the count costs one
    // query however many orders there are.
    let store = PostgresStore::options(url).schema(schema).connect().await?;
    while terminal(store.counts().await?) < before + orders as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let mut by_worker = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        let outcome = OrderSaga::on(&client).wait(*id).await?;
        let worker = outcome.ctx().handled_by.clone().unwrap_or_default();
        if !quiet {
            println!("order {} completed by {worker}", outcome.ctx().order_id);
        }
        *by_worker.entry(worker).or_default() += 1;
    }
    println!(
        "{orders} orders completed by {workers} worker processes in {took:.2?} ({:.0} orders/s); \
         orders per worker: {by_worker:?}",
        orders as f64 / took.as_secs_f64()
    );
    for mut child in children {
        drop(child.stdin.take());
        child.wait().ok();
    }
    std::io::stdout().flush().ok();
    Ok(())
}
