//! Remote steps: what carrying a step out in a participant service costs against the same step
//! run locally, on the in-memory bus and on NATS JetStream (`SAGA_NATS_URL`, skipped, saying so,
//! without it).
//!
//! Each saga has one step that returns at once (the service's handler does the same), in
//! memory. Printed before the criterion benchmarks, from 2,000 sagas one after another: the
//! latency of a saga with the local step and with the remote one (median and p99), and the
//! difference; then the throughput of 2,000 remote sagas, 100 at a time, with 1 and with 4
//! instances of the service (tasks of this process, each with its own subscription), and, on
//! NATS, with 1 and with 4 service processes (this program started again as the service).
//! Criterion: `remote/local_step` and `remote/memory_bus` per saga.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use saga_runtime::bus::{Bus, MemoryBus, NatsBusOptions};
use saga_runtime::remote::{Command, Participant, ParticipantCx};
use saga_runtime::{saga, saga_step, Engine, StepError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ctx {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charge {
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    amount: u64,
}

impl Command for Charge {
    const SERVICE: &'static str = "payments";
    const ACTION: &'static str = "charge";
    type Reply = Payment;
}

#[saga_step(remote, timeout = "10s")]
async fn charge(ctx: &Ctx) -> Result<Charge, StepError> {
    Ok(Charge { amount: ctx.amount })
}

#[saga_step]
async fn charge_here(ctx: &Ctx) -> Result<Payment, StepError> {
    Ok(Payment { amount: ctx.amount })
}

saga! { RemoteCharge(Ctx, ()) { charge } }
saga! { LocalCharge(Ctx, ()) { charge_here } }

async fn take_payment(command: Charge, _cx: ParticipantCx<()>) -> Result<Payment, StepError> {
    Ok(Payment {
        amount: command.amount,
    })
}

/// `instances` instances of the payments service on `bus`.
fn services(bus: &Arc<dyn Bus>, instances: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..instances)
        .map(|_| {
            let service =
                Participant::new(bus.clone(), "payments", ()).handle::<Charge, _, _>(take_payment);
            tokio::spawn(async move {
                let _ = service.run().await;
            })
        })
        .collect()
}

/// Median and 99th percentile of `n` sagas run one after another by `one`.
async fn latency<F: std::future::Future<Output = ()>>(
    n: usize,
    one: impl Fn() -> F,
) -> (Duration, Duration) {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        one().await;
        took.push(started.elapsed());
    }
    took.sort();
    (took[n / 2], took[n * 99 / 100])
}

/// Sagas per second over `n` remote sagas, `at_once` at a time.
async fn throughput(engine: &Engine, n: usize, at_once: usize) -> f64 {
    let started = Instant::now();
    let sagas = RemoteCharge::on(engine);
    let mut left = n;
    while left > 0 {
        let batch = left.min(at_once);
        let runs: Vec<_> = (0..batch).map(|_| sagas.run(Ctx { amount: 1 })).collect();
        for outcome in futures_util::future::join_all(runs).await {
            let outcome = outcome.expect("ran");
            assert!(outcome.is_completed(), "{outcome:?}");
        }
        left -= batch;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Prints the latencies and throughputs on `bus`, called `name`.
async fn measure(name: &str, bus: Arc<dyn Bus>) {
    let running = services(&bus, 1);
    let engine = Engine::builder().bus(bus.clone()).build();
    let local = Engine::in_memory();
    // Warm up: the reply consumer's subscription, connections.
    for _ in 0..50 {
        assert!(RemoteCharge::on(&engine)
            .run(Ctx { amount: 1 })
            .await
            .unwrap()
            .is_completed());
    }
    let (local_median, local_p99) = latency(2_000, || async {
        assert!(LocalCharge::on(&local)
            .run(Ctx { amount: 1 })
            .await
            .unwrap()
            .is_completed());
    })
    .await;
    let (remote_median, remote_p99) = latency(2_000, || async {
        assert!(RemoteCharge::on(&engine)
            .run(Ctx { amount: 1 })
            .await
            .unwrap()
            .is_completed());
    })
    .await;
    println!(
        "remote/{name}: latency local step median {local_median:?} p99 {local_p99:?}; remote \
         step median {remote_median:?} p99 {remote_p99:?}; added median {:?} p99 {:?}",
        remote_median.saturating_sub(local_median),
        remote_p99.saturating_sub(local_p99),
    );
    let one = throughput(&engine, 2_000, 100).await;
    let more = services(&bus, 3);
    let four = throughput(&engine, 2_000, 100).await;
    println!(
        "remote/{name}: {one:.0} sagas/s with 1 service instance, {four:.0} with 4 (100 at once)"
    );
    for service in running.into_iter().chain(more) {
        service.abort();
    }
}

/// The environment variable that makes this program the payments service: `{url} {namespace}`.
const SERVICE: &str = "REMOTE_BENCH_SERVICE";

/// Runs the payments service on the NATS namespace `spec` names, until killed.
fn serve(spec: &str) {
    let (url, namespace) = spec.split_once(' ').expect("`{url} {namespace}`");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let bus = NatsBusOptions::new(url)
            .namespace(namespace)
            .connect()
            .await
            .expect("the NATS server");
        let service =
            Participant::new(Arc::new(bus), "payments", ()).handle::<Charge, _, _>(take_payment);
        println!("READY");
        let _ = service.run().await;
    });
}

/// A service process on NATS namespace `namespace` of `url`, once it listens.
fn service_process(url: &str, namespace: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().expect("this program"))
        .env(SERVICE, format!("{url} {namespace}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the service process starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("piped"))
        .read_line(&mut line)
        .expect("the service says it listens");
    assert_eq!(line.trim(), "READY");
    child
}

/// The throughput on NATS with the service as 1 and as 4 processes.
async fn processes(url: &str) {
    let namespace = format!("bench_p{}", std::process::id());
    let bus = NatsBusOptions::new(url)
        .namespace(namespace.clone())
        .max_age(Duration::from_secs(600))
        .connect()
        .await
        .expect("the NATS server");
    let engine = Engine::builder().bus(Arc::new(bus.clone())).build();
    let mut children = vec![service_process(url, &namespace)];
    throughput(&engine, 200, 100).await;
    let one = throughput(&engine, 2_000, 100).await;
    children.extend((0..3).map(|_| service_process(url, &namespace)));
    throughput(&engine, 200, 100).await;
    let four = throughput(&engine, 2_000, 100).await;
    println!(
        "remote/nats: {one:.0} sagas/s with 1 service process, {four:.0} with 4 (100 at once)"
    );
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    bus.delete().await.expect("the stream is deleted");
}

fn remote(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(measure("memory", Arc::new(MemoryBus::new())));
    match std::env::var("SAGA_NATS_URL") {
        Ok(url) => rt.block_on(async {
            let bus = NatsBusOptions::new(&url)
                .namespace(format!("bench_{}", std::process::id()))
                .max_age(Duration::from_secs(600))
                .connect()
                .await
                .expect("the NATS server");
            measure("nats", Arc::new(bus.clone())).await;
            bus.delete().await.expect("the stream is deleted");
            processes(&url).await;
        }),
        Err(_) => println!("SKIPPED: remote/nats needs SAGA_NATS_URL (e.g. nats://127.0.0.1:4222)"),
    }
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let engine = Engine::builder().bus(bus.clone()).build();
    let local = Engine::in_memory();
    let running = rt.block_on(async { services(&bus, 1) });
    let mut group = c.benchmark_group("remote");
    group.bench_function("local_step", |b| {
        b.to_async(&rt).iter(|| async {
            LocalCharge::on(&local)
                .run(Ctx { amount: 1 })
                .await
                .unwrap()
        })
    });
    group.bench_function("memory_bus", |b| {
        b.to_async(&rt).iter(|| async {
            RemoteCharge::on(&engine)
                .run(Ctx { amount: 1 })
                .await
                .unwrap()
        })
    });
    group.finish();
    for service in running {
        service.abort();
    }
}

criterion_group!(benches, remote);

fn main() {
    if let Ok(spec) = std::env::var(SERVICE) {
        return serve(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
