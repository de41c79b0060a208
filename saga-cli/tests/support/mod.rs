//! What the tests of the `saga` binary share: a saga type, engines on a SQLite file, and stores
//! filled by real sagas.

#![allow(dead_code)]

pub mod server;
pub mod web;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use saga_runtime::{saga, saga_step, Engine, SagaId, SagaOutcome, StepError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Order {
    pub item: String,
    pub fail_charge: bool,
    pub reserved: bool,
    pub charged: bool,
}

/// Items whose `reserve` hangs, until removed from here (`item@charge`: whose `charge` hangs).
pub static HANGING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[saga_step(compensate = release)]
async fn reserve(ctx: &mut Order) -> Result<(), StepError> {
    while HANGING.lock().unwrap().contains(&ctx.item) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ctx.reserved = true;
    Ok(())
}

async fn release(ctx: &mut Order) -> Result<(), StepError> {
    ctx.reserved = false;
    Ok(())
}

#[saga_step(retries = 1, backoff = "10ms")]
async fn charge(ctx: &mut Order) -> Result<(), StepError> {
    let hangs = format!("{}@charge", ctx.item);
    while HANGING.lock().unwrap().contains(&hangs) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if ctx.fail_charge {
        return Err(StepError::permanent("card declined"));
    }
    ctx.charged = true;
    Ok(())
}

saga! { pub Orders(Order, ()) { reserve, charge } }

#[saga_step(retries = 2, backoff = "20s")]
async fn settle(_ctx: &mut Order) -> Result<(), StepError> {
    Err(StepError::transient("the bank is closed"))
}

saga! {
    /// Waits on a durable timer (about 20 s) after its first attempt.
    pub Settlements(Order, ()) { settle }
}

pub fn saga_cmd(db: &Path) -> Command {
    let mut command = Command::cargo_bin("saga").unwrap();
    command
        .env_remove("SAGA_DB")
        .env("NO_COLOR", "1")
        .arg("--db")
        .arg(db);
    command
}

pub fn stdout(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The command fails with one line on stderr, which is returned.
pub fn error(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(!output.status.success(), "{command:?} succeeded");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr.trim_end().to_owned()
}

pub fn engine(path: &Path) -> Engine {
    Engine::builder()
        .sqlite(path)
        .unwrap()
        .renew_interval(Duration::from_millis(100))
        .register::<Orders>(())
        .register::<Settlements>(())
        .build()
}

/// A store with a completed saga (key `order-1`) and a compensated one.
pub async fn filled(dir: &Path) -> (PathBuf, SagaId, SagaId) {
    let path = dir.join("sagas.db");
    let engine = engine(&path);
    let done = Orders::on(&engine)
        .request(Order {
            item: "book".into(),
            ..Order::default()
        })
        .idempotency_key("order-1")
        .run()
        .await
        .unwrap();
    // Ids are ordered by the millisecond they were made in, and in any order within one: a saga
    // can complete within a millisecond, and the tests list these two in this order.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let undone = Orders::on(&engine)
        .run(Order {
            item: "lamp".into(),
            fail_charge: true,
            ..Order::default()
        })
        .await
        .unwrap();
    assert!(done.is_completed() && matches!(undone, SagaOutcome::Compensated { .. }));
    (path, done.id(), undone.id())
}

/// A saga of `path` interrupted in `reserve` by a runtime that went away, then parked by a
/// worker that does not know its type.
pub async fn parked(path: &Path, item: &str) -> SagaId {
    let id = {
        let path = path.to_owned();
        let item = item.to_owned();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let engine = Engine::builder()
                    .sqlite(&path)
                    .unwrap()
                    .worker_id("cli-test")
                    .build();
                HANGING.lock().unwrap().push(item.clone());
                let id = Orders::on(&engine)
                    .start(Order {
                        item: item.clone(),
                        ..Order::default()
                    })
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                id
            })
        })
        .await
        .unwrap()
    };
    // Its step would finish now (the runtime that ran it is gone), in whichever worker runs it
    // next.
    HANGING.lock().unwrap().retain(|i| i != item);
    let unaware = Engine::builder()
        .sqlite(path)
        .unwrap()
        .worker_id("cli-test")
        .build();
    let report = unaware.recover().await.unwrap();
    assert_eq!(report.parked.len(), 1, "{report:?}");
    id
}

/// A saga that waits on a durable timer (a 20 s backoff) after its first attempt failed:
/// started on `engine`, which runs on the SQLite file `path`.
pub async fn waiting(engine: &Engine, path: &Path) -> SagaId {
    use saga_runtime::store::{SagaQuery, SagaStore, SqliteStore};
    let id = Settlements::on(engine)
        .start(Order::default())
        .await
        .unwrap();
    let store = SqliteStore::options(path).read_only(true).open().unwrap();
    for _ in 0..1_000 {
        let waiting = store.list(SagaQuery::new().waiting()).await.unwrap();
        if waiting.iter().any(|s| s.id == id) {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("saga {id} never waited on its timer");
}

/// Waits for saga `id` to end and checks that it was compensated because it was cancelled;
/// returns its final context.
pub async fn compensated_by_cancel(engine: &Engine, id: SagaId) -> Order {
    let outcome = Orders::on(engine).wait(id).await.unwrap();
    assert!(
        matches!(
            &outcome,
            SagaOutcome::Compensated {
                cause: saga_runtime::RollbackCause::Cancelled,
                ..
            }
        ),
        "{outcome:?}"
    );
    outcome.ctx().clone()
}

/// A client of the PostgreSQL database at `url`, for a test's own checks and its clean-up.
pub async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// An engine running `Orders` on a new schema of the PostgreSQL database at `url`, named
/// `{prefix}_<uuid>`; and that schema's name.
pub async fn postgres_engine(url: &str, prefix: &str) -> (Engine, String) {
    let schema = format!("{prefix}_{}", SagaId::new().to_string().replace('-', ""));
    let store = saga_runtime::store::PostgresStore::options(url)
        .schema(&schema)
        .connect()
        .await
        .unwrap();
    let engine = Engine::builder()
        .store(store)
        .renew_interval(Duration::from_millis(100))
        .register::<Orders>(())
        .build();
    (engine, schema)
}
