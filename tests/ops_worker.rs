//! The worker process of the operator tests (`operator.rs`): runs the sagas of `ops_sagas.rs`
//! on a SQLite store until the file `STORE.stop` exists.
//!
//! ```text
//! ops_worker STORE LEDGER NAME [parkable]
//!     a worker named NAME (renewing every 100 ms, leases of 1 s, durable timers from 1 s),
//!     with every saga type registered (`Parkable` only with `parkable`); prints `READY`
//!     once recovered, then starts `TYPE ID SLEEP_MS` for each such line on its standard
//!     input, printing `ACK ID` once it is recorded
//! ```

use std::io::{BufRead, Write as _};
use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{Backoff, Engine, Jitter, SagaId};

#[path = "ops_sagas.rs"]
#[allow(dead_code)]
mod ops_sagas;
use ops_sagas::{Brittle, Cancellable, Flaky, Ledger, OpsCtx, Parkable, Shipping};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (store, ledger, name) = (&args[1], &args[2], &args[3]);
    let parkable = args.get(4).is_some_and(|a| a == "parkable");
    let ledger = Arc::new(Ledger::open(ledger));
    let mut builder = Engine::builder()
        .sqlite(store)
        .expect("store opens")
        .worker_id(name.as_str())
        .lease(Duration::from_secs(1))
        .renew_interval(Duration::from_millis(100))
        .backoff(Backoff {
            cap: Duration::from_secs(60),
            jitter: Jitter::None,
        })
        .register::<Cancellable>(ledger.clone())
        .register::<Brittle>(ledger.clone())
        .register::<Shipping>(ledger.clone())
        .register::<Flaky>(ledger.clone());
    if parkable {
        builder = builder.register::<Parkable>(ledger.clone());
    }
    let engine = builder.build();
    let report = engine.recover().await.expect("recovery");
    eprintln!(
        "{name}: recovered {} parked {}",
        report.resumed.len(),
        report.parked.len()
    );
    println!("READY");
    std::io::stdout().flush().unwrap();

    let (lines, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let stop = std::path::PathBuf::from(format!("{store}.stop"));
    loop {
        tokio::select! {
            Some(line) = commands.recv() => {
                let words: Vec<&str> = line.split_whitespace().collect();
                let id: SagaId = words[1].parse().unwrap();
                let ctx = OpsCtx { entries: Vec::new(), sleep_ms: words[2].parse().unwrap() };
                let started = match words[0] {
                    "Cancellable" => Cancellable::on(&engine).request(ctx).deps(ledger.clone()).id(id).start().await,
                    "Brittle" => Brittle::on(&engine).request(ctx).deps(ledger.clone()).id(id).start().await,
                    "Shipping" => Shipping::on(&engine).request(ctx).deps(ledger.clone()).id(id).start().await,
                    "Flaky" => Flaky::on(&engine).request(ctx).deps(ledger.clone()).id(id).start().await,
                    other => panic!("unknown saga type {other}"),
                };
                started.expect("started");
                println!("ACK {id}");
                std::io::stdout().flush().unwrap();
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if stop.exists() {
                    return;
                }
            }
        }
    }
}
