//! The processes of the remote-step chaos test (`remote_chaos.rs`): an orchestrator running
//! `ChaosOrder` sagas on a SQLite file, the inventory service and the payments service; all on
//! the NATS namespace `SAGA_REMOTE_NAMESPACE` of the server at `SAGA_NATS_URL`, all writing
//! every effect to one ledger (a SQLite file) keyed by idempotency key: a key applied again
//! counts as re-applied. A saga holds stock (inventory), charges (payments) and ships (here).
//! Saga `i` ships unless `i % 5 == 0` (then the payment is refunded and the stock released, by
//! their services, in that order); its first charge attempt takes longer than its timeout when
//! `i % 25 == 1` (its late reply is stale). The orchestrator writes how many stale replies it
//! dropped to the ledger as it goes.
//!
//! ```text
//! remote_worker orchestrator STORE LEDGER FROM TO
//!     resumes what it finds, starts sagas FROM..TO (ids `Uuid::from_u128(i + 1)`,
//!     printing `ACK i` once each is recorded), then waits until every saga in STORE ended
//! remote_worker payments LEDGER
//! remote_worker inventory LEDGER
//!     the service, until killed
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_runtime::bus::{Bus, NatsBusOptions};
use saga_runtime::remote::{Command, Participant, ParticipantCx};
use saga_runtime::{saga, saga_handler, saga_step, Engine, SagaId, StepCx, StepError};
use saga_tests::payments::{Charge, Payment, Refund};
use serde::{Deserialize, Serialize};

/// The effects ledger shared by the processes.
struct Ledger(Mutex<rusqlite::Connection>);

impl Ledger {
    fn open(path: &str) -> Ledger {
        let conn = rusqlite::Connection::open(path).expect("ledger opens");
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        for attempt in 0.. {
            match conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE IF NOT EXISTS effects (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     key TEXT NOT NULL UNIQUE,
                     saga TEXT NOT NULL,
                     kind TEXT NOT NULL,
                     applied INTEGER NOT NULL DEFAULT 1
                 );
                 CREATE TABLE IF NOT EXISTS stale (
                     process INTEGER PRIMARY KEY,
                     replies INTEGER NOT NULL
                 );",
            ) {
                Ok(()) => break,
                Err(_) if attempt < 1000 => std::thread::sleep(Duration::from_millis(10)),
                Err(error) => panic!("the ledger cannot be set up: {error}"),
            }
        }
        Ledger(Mutex::new(conn))
    }

    /// Applies effect `kind` of saga `saga` under `key`, once: again, it only counts.
    fn apply(&self, key: &str, saga: &str, kind: &str) -> Result<(), StepError> {
        self.0
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO effects (key, saga, kind) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET applied = applied + 1",
                rusqlite::params![key, saga, kind],
            )
            .map(drop)
            .map_err(StepError::from_error)
    }

    /// Records that this process dropped `replies` stale replies so far.
    fn stale(&self, replies: u64) {
        let _ = self.0.lock().unwrap().execute(
            "INSERT INTO stale (process, replies) VALUES (?1, ?2)
             ON CONFLICT (process) DO UPDATE SET replies = ?2",
            rusqlite::params![std::process::id(), replies as i64],
        );
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Order {
    /// The saga's number.
    number: u64,
}

/// Hold stock for saga `number` (the inventory service).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hold {
    number: u64,
}

impl Command for Hold {
    const SERVICE: &'static str = "inventory";
    const ACTION: &'static str = "hold";
    type Reply = ();
}

/// Let the stock go again: `Hold`'s compensation (the inventory service).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LetGo;

impl Command for LetGo {
    const SERVICE: &'static str = "inventory";
    const ACTION: &'static str = "let-go";
    type Reply = ();
}

/// Carried out by the inventory service, and undone by it.
#[saga_step(remote, compensate = release, timeout = "2s", retries = 30, backoff = "50ms")]
async fn reserve(order: &Order) -> Result<Hold, StepError> {
    Ok(Hold {
        number: order.number,
    })
}

async fn release(_order: &Order) -> Result<LetGo, StepError> {
    Ok(LetGo)
}

/// Carried out by the payments service; retried long enough to outlast a restart of the NATS
/// server.
#[saga_step(remote, compensate = refund, timeout = "2s", retries = 30, backoff = "50ms")]
async fn charge(order: &Order, _cx: &StepCx<Arc<Ledger>>) -> Result<Charge, StepError> {
    Ok(Charge {
        amount: order.number,
        behaviour: match order.number % 25 == 1 {
            true => "slow-once",
            false => "ok",
        }
        .into(),
    })
}

/// Undone by the payments service.
async fn refund(
    _order: &Order,
    _cx: &StepCx<Arc<Ledger>>,
    payment: Payment,
) -> Result<Refund, StepError> {
    Ok(Refund {
        payment: payment.id,
        amount: payment.amount,
    })
}

#[saga_step(timeout = "10s", retries = 3, backoff = "5ms")]
async fn ship(
    order: &mut Order,
    cx: &StepCx<Arc<Ledger>>,
    payment: saga_runtime::Output<charge>,
) -> Result<(), StepError> {
    if order.number.is_multiple_of(5) {
        return Err(StepError::permanent("no courier"));
    }
    let saga = cx.saga_id().to_string();
    cx.deps().apply(
        &cx.idempotency_key(),
        &saga,
        &format!("ship {}", payment.id),
    )
}

saga! {
    ChaosOrder(Order, Arc<Ledger>) { reserve, charge, ship }
}

/// The payments service: charges once per key (the payment's id names the attempt that made
/// it); the first attempt of a "slow-once" charge takes 2.5 s, past its timeout.
#[saga_handler]
async fn take_payment(
    command: Charge,
    cx: ParticipantCx<Arc<Ledger>>,
) -> Result<Payment, StepError> {
    if command.behaviour == "slow-once" && cx.attempt() == 1 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    let saga = cx.saga_id().to_string();
    cx.deps().apply(cx.idempotency_key(), &saga, "charge")?;
    Ok(Payment {
        id: format!("pay-{}", cx.attempt()),
        amount: command.amount,
    })
}

/// The inventory service: holds stock once per key.
#[saga_handler]
async fn hold(_command: Hold, cx: ParticipantCx<Arc<Ledger>>) -> Result<(), StepError> {
    let saga = cx.saga_id().to_string();
    cx.deps().apply(cx.idempotency_key(), &saga, "reserve")
}

/// The inventory service's release, once per key.
#[saga_handler]
async fn let_go(_command: LetGo, cx: ParticipantCx<Arc<Ledger>>) -> Result<(), StepError> {
    let saga = cx.saga_id().to_string();
    cx.deps().apply(cx.idempotency_key(), &saga, "release")
}

/// The payments service's refund, once per key.
#[saga_handler]
async fn give_back(command: Refund, cx: ParticipantCx<Arc<Ledger>>) -> Result<(), StepError> {
    let saga = cx.saga_id().to_string();
    let kind = format!("refund {}", command.payment);
    cx.deps().apply(cx.idempotency_key(), &saga, &kind)
}

/// The bus, connecting again until the NATS server answers (it may be restarting).
async fn bus() -> Arc<dyn Bus> {
    let url = std::env::var("SAGA_NATS_URL").expect("SAGA_NATS_URL");
    let namespace = std::env::var("SAGA_REMOTE_NAMESPACE").expect("SAGA_REMOTE_NAMESPACE");
    let started = std::time::Instant::now();
    loop {
        let connected = NatsBusOptions::new(&url)
            .namespace(namespace.clone())
            .ack_wait(Duration::from_secs(2))
            .max_age(Duration::from_secs(600))
            .connect()
            .await;
        match connected {
            Ok(bus) => return Arc::new(bus),
            Err(error) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("the NATS server: {error}; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the NATS server: {error}"),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args[1].as_str() {
        "payments" => {
            let ledger = Arc::new(Ledger::open(&args[2]));
            let service = Participant::new(bus().await, "payments", ledger)
                .handler::<take_payment>()
                .handler::<give_back>();
            println!("READY");
            service.run().await.expect("the service runs");
        }
        "inventory" => {
            let ledger = Arc::new(Ledger::open(&args[2]));
            let service = Participant::new(bus().await, "inventory", ledger)
                .handler::<hold>()
                .handler::<let_go>();
            println!("READY");
            service.run().await.expect("the service runs");
        }
        "orchestrator" => {
            let (store, ledger) = (&args[2], Arc::new(Ledger::open(&args[3])));
            let (from, to): (u128, u128) = (args[4].parse().unwrap(), args[5].parse().unwrap());
            let engine = Engine::builder()
                .sqlite(store)
                .expect("the store opens")
                .bus(bus().await)
                .lease(Duration::from_millis(500))
                // A wait for a reply longer than 200 ms holds no task: the reply, or the
                // attempt's timeout, wakes the saga.
                .timer_threshold(Duration::from_millis(200))
                .register::<ChaosOrder>(ledger.clone())
                .build();
            let (counted, counter) = (engine.clone(), ledger.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    counter.stale(counted.stale_replies());
                }
            });
            engine.recover().await.expect("recovery");
            for i in from..to {
                let id = SagaId::from_uuid(uuid::Uuid::from_u128(i + 1));
                ChaosOrder::on(&engine)
                    .request(Order { number: i as u64 })
                    .deps(ledger.clone())
                    .id(id)
                    .start()
                    .await
                    .expect("start");
                println!("ACK {i}");
            }
            // Until every saga in the store ended (the ones resumed or claimed too).
            let conn = rusqlite::Connection::open(store).unwrap();
            conn.busy_timeout(Duration::from_secs(30)).unwrap();
            loop {
                let open: i64 = conn
                    .query_row("SELECT COUNT(*) FROM sagas WHERE terminal = 0", [], |r| {
                        r.get(0)
                    })
                    .unwrap_or(1);
                if open == 0 && engine.running_sagas() == 0 {
                    ledger.stale(engine.stale_replies());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
