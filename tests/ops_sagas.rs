//! The sagas of the operator tests (`operator.rs`), shared by the test process (which only looks
//! them up, cancels, resumes and retries them) and the worker process that runs them
//! (`ops_worker.rs`).
//!
//! Every attempt is recorded in a ledger (a separate SQLite file) with the process that ran it,
//! its attempt number and when it started, so that the test can tell which process ran what,
//! and when. Steps that must fail until an operator fixes the cause read a switch in the ledger.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use saga_runtime::{saga, saga_step, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// What the sagas carry: the names of the committed steps, and how long the slow step sleeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpsCtx {
    /// Committed actions and compensations, in order.
    pub entries: Vec<String>,
    /// How long step `slow` (and `commit`) sleeps, in milliseconds.
    pub sleep_ms: u64,
}

/// The effects ledger and the switches.
pub struct Ledger {
    conn: Mutex<rusqlite::Connection>,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The step (or `undo:<step>`).
    pub key: String,
    /// The attempt number the step handle gave.
    pub attempt: u32,
    /// The process that ran it.
    pub pid: u32,
    /// When it started, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

impl Ledger {
    /// Opens (creating) the ledger at `path`.
    pub fn open(path: &str) -> Ledger {
        let conn = rusqlite::Connection::open(path).expect("ledger opens");
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS attempts (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 saga TEXT NOT NULL,
                 key TEXT NOT NULL,
                 attempt INTEGER NOT NULL,
                 pid INTEGER NOT NULL,
                 at_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS switches (name TEXT PRIMARY KEY);",
        )
        .unwrap();
        Ledger {
            conn: Mutex::new(conn),
        }
    }

    fn record<D>(&self, key: &str, cx: &StepCx<D>) -> Result<(), StepError> {
        self.conn
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO attempts (saga, key, attempt, pid, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![
                    cx.saga_id().to_string(),
                    key,
                    cx.attempt(),
                    std::process::id(),
                    now_ms()
                ],
            )
            .map(drop)
            .map_err(StepError::from_error)
    }

    /// Whether switch `name` is on.
    pub fn is_on(&self, name: &str) -> bool {
        self.conn
            .lock()
            .unwrap()
            .query_row(
                "SELECT count(*) FROM switches WHERE name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            > 0
    }

    /// Turns switch `name` on: the cause an operator fixes.
    pub fn turn_on(&self, name: &str) {
        self.conn
            .lock()
            .unwrap()
            .execute("INSERT OR IGNORE INTO switches (name) VALUES (?1)", [name])
            .unwrap();
    }

    /// The attempts of saga `id`, in order.
    pub fn attempts(&self, id: &str) -> Vec<Attempt> {
        let conn = self.conn.lock().unwrap();
        let mut statement = conn
            .prepare("SELECT key, attempt, pid, at_ms FROM attempts WHERE saga = ?1 ORDER BY seq")
            .unwrap();
        statement
            .query_map([id], |r| {
                Ok(Attempt {
                    key: r.get(0)?,
                    attempt: r.get(1)?,
                    pid: r.get(2)?,
                    at_ms: r.get(3)?,
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Records the attempt and commits the step's name.
fn ran(ctx: &mut OpsCtx, cx: &StepCx<Ledger>, key: &str) -> Result<(), StepError> {
    cx.deps().record(key, cx)?;
    ctx.entries.push(key.to_owned());
    Ok(())
}

#[saga_step(compensate = undo_first)]
async fn first(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "first")
}

async fn undo_first(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "undo:first")
}

#[saga_step(compensate = undo_slow)]
async fn slow(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "slow")?;
    tokio::time::sleep(Duration::from_millis(ctx.sleep_ms)).await;
    Ok(())
}

async fn undo_slow(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "undo:slow")
}

#[saga_step]
async fn last(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "last")
}

saga! {
    /// first, slow (sleeps `sleep_ms`), last: cancelled while `slow` runs.
    pub Cancellable(OpsCtx, Ledger) { first, slow, last }
}

#[saga_step(compensate = undo_fragile)]
async fn fragile(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "fragile")
}

/// Fails for good until switch `undo-fixed` is on.
async fn undo_fragile(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "undo:fragile")?;
    match cx.deps().is_on("undo-fixed") {
        true => Ok(()),
        false => Err(StepError::permanent("the refund service refuses")),
    }
}

#[saga_step]
async fn boom(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "boom")?;
    Err(StepError::permanent("boom"))
}

saga! {
    /// Ends compensation-failed until `undo-fixed` is on.
    pub Brittle(OpsCtx, Ledger) { first, fragile, boom }
}

#[saga_step(pivot)]
async fn commit(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "commit")
}

/// Sleeps `sleep_ms`, then fails for good until switch `ship-fixed` is on.
#[saga_step(nothing_to_undo)]
async fn ship(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "ship")?;
    tokio::time::sleep(Duration::from_millis(ctx.sleep_ms)).await;
    match cx.deps().is_on("ship-fixed") {
        true => Ok(()),
        false => Err(StepError::permanent("the carrier is down")),
    }
}

saga! {
    /// first, commit (the pivot), ship, last: ends failed after its pivot until `ship-fixed`.
    pub Shipping(OpsCtx, Ledger) { first, commit, ship, last }
}

/// Fails (transiently) at its first attempt; the retry waits 10 s.
#[saga_step(retries = 2, backoff = "10s", nothing_to_undo)]
async fn flaky(ctx: &mut OpsCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    ran(ctx, cx, "flaky")?;
    match cx.attempt() {
        1 => Err(StepError::transient("busy, try later")),
        _ => Ok(()),
    }
}

saga! {
    /// first, flaky (a 10 s backoff after its first attempt), last.
    pub Flaky(OpsCtx, Ledger) { first, flaky, last }
}

saga! {
    /// One step; the worker registers it only when told to (the cause of its parking, fixed).
    pub Parkable(OpsCtx, Ledger) { slow }
}
