//! The worker process of the crash tests (`crash.rs`, `fleet.rs`): runs generated sagas on a
//! SQLite file or, when STORE is `URL#SCHEMA`, a schema of a PostgreSQL database,
//! recording every effect in a separate ledger keyed by idempotency key, and is killed at random
//! moments (or aborts at a named failpoint) by the test.
//!
//! ```text
//! crash_worker STORE LEDGER soak SEED FROM TO
//!     recovers, starts sagas FROM..TO of SEED (printing `ACK i` once each is recorded),
//!     then waits until every saga in STORE is terminal
//! crash_worker STORE LEDGER keyed COUNT
//!     recovers, starts 3-step sagas with idempotency keys `order-0`..`order-COUNT` (printing
//!     `STARTED i ID`), then waits until every saga in STORE is terminal
//! crash_worker STORE LEDGER one ID fail-pivot|no-fail
//!     recovers, starts the 4-step `Matrix` saga with this id, waits until it is terminal
//! crash_worker STORE LEDGER group|built ID no-fail|fail-member|fail-first
//!     recovers, starts the group matrix saga with this id (`built`: the same saga assembled
//!     at run time, its members instances of one step), waits until it is terminal
//! crash_worker STORE LEDGER fleet SEED LEASE_MS
//!     one of several workers on STORE, each with a name of its own and a lease of LEASE_MS:
//!     prints `OWNER <worker id>`, starts saga i of SEED for each line `i` on its standard
//!     input (printing `ACK i`), prints `FENCED n` and `LOST n` whenever its counts of
//!     refused stale writes and of leases found lost grow, and goes on running whatever it
//!     holds or claims until the file `stop` exists beside LEDGER
//! ```
//!
//! The ledger is also the steps' downstream service, fenced as `StepCx::fencing_token` is meant
//! to be used: each attempt first tells it its token, and an effect whose token is lower than
//! the highest it has seen for the saga is refused (a stale worker). Every attempt's effect is
//! recorded in `attempts` with its process, token and times, applied or refused.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_runtime::{saga, saga_step, Engine, Saga, SagaId, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// What each step does, by position: the plan is chosen by the test, so a replay with the same
/// seed runs the same sagas.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CrashCtx {
    /// 0 ok, 1 transient once then ok, 2 permanent failure, 3 time out (every attempt), 4 panic.
    plan: Vec<u8>,
    /// Milliseconds each step sleeps first, so that kills land mid-step.
    delays: Vec<u8>,
}

/// The effects ledger: a separate database where each effect is recorded once per key.
struct Ledger {
    conn: Mutex<rusqlite::Connection>,
}

impl Ledger {
    fn open(path: &str) -> Ledger {
        let conn = rusqlite::Connection::open(path).expect("ledger opens");
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        // Other workers open it at the same time: switching to WAL takes a lock that the busy
        // timeout does not wait for, so it is retried (and skipped once another did it).
        for attempt in 0.. {
            let mode: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            if mode == "wal" {
                break;
            }
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(_) if attempt < 1000 => std::thread::sleep(Duration::from_millis(10)),
                Err(error) => panic!("the ledger cannot switch to WAL: {error}"),
            }
        }
        // Survives the SIGKILLs these tests deal in (not a power cut), at a fraction of the fsyncs.
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS effects (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 key TEXT NOT NULL UNIQUE,
                 saga TEXT NOT NULL,
                 step INTEGER NOT NULL,
                 kind TEXT NOT NULL,
                 applied INTEGER NOT NULL DEFAULT 1
             );
             CREATE TABLE IF NOT EXISTS fences (
                 saga TEXT PRIMARY KEY,
                 token INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS attempts (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 saga TEXT NOT NULL,
                 step INTEGER NOT NULL,
                 kind TEXT NOT NULL,
                 pid INTEGER NOT NULL,
                 token INTEGER NOT NULL,
                 started_ms INTEGER NOT NULL,
                 ended_ms INTEGER NOT NULL,
                 outcome TEXT NOT NULL
             );",
        )
        .unwrap();
        Ledger {
            conn: Mutex::new(conn),
        }
    }

    /// An attempt starts: the ledger learns its token (a newer worker's token fences older
    /// ones from now on).
    fn begin<D>(&self, cx: &StepCx<D>) -> Result<(), StepError> {
        self.conn
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO fences (saga, token) VALUES (?1, ?2)
                 ON CONFLICT (saga) DO UPDATE SET token = max(token, excluded.token)",
                rusqlite::params![cx.saga_id().to_string(), cx.fencing_token() as i64],
            )
            .map(drop)
            .map_err(StepError::from_error)
    }

    /// Applies an effect under its idempotency key, unless a newer worker's token was seen for
    /// the saga: a second application is counted, not recorded again; a stale one is refused.
    fn apply<D>(
        &self,
        cx: &StepCx<D>,
        step: usize,
        kind: &str,
        started_ms: i64,
    ) -> Result<(), StepError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StepError::from_error)?;
        let saga = cx.saga_id().to_string();
        let token = cx.fencing_token() as i64;
        let fence: i64 = tx
            .query_row(
                "SELECT coalesce(max(token), 0) FROM fences WHERE saga = ?1",
                [&saga],
                |r| r.get(0),
            )
            .map_err(StepError::from_error)?;
        let outcome = if token < fence { "refused" } else { "applied" };
        if outcome == "applied" {
            tx.execute(
                "INSERT INTO effects (key, saga, step, kind) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET applied = applied + 1",
                rusqlite::params![cx.idempotency_key(), saga, step as i64, kind],
            )
            .map_err(StepError::from_error)?;
        }
        tx.execute(
            "INSERT INTO attempts (saga, step, kind, pid, token, started_ms, ended_ms, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                saga,
                step as i64,
                kind,
                std::process::id(),
                token,
                started_ms,
                now_ms(),
                outcome
            ],
        )
        .map_err(StepError::from_error)?;
        tx.commit().map_err(StepError::from_error)?;
        match outcome {
            "refused" => Err(StepError::permanent(
                "stale worker: a newer one holds this saga",
            )),
            _ => Ok(()),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn act(ctx: &CrashCtx, cx: &StepCx<Ledger>, step: usize) -> Result<(), StepError> {
    let started = now_ms();
    cx.deps().begin(cx)?;
    tokio::time::sleep(Duration::from_millis(u64::from(ctx.delays[step]))).await;
    match ctx.plan[step] {
        1 if cx.attempt() == 1 => return Err(StepError::transient("flaky")),
        2 => return Err(StepError::permanent("refused")),
        3 => tokio::time::sleep(Duration::from_secs(1)).await,
        4 => panic!("step {step} panicked"),
        _ => {}
    }
    cx.deps().apply(cx, step, "do", started)
}

async fn undo(ctx: &CrashCtx, cx: &StepCx<Ledger>, step: usize) -> Result<(), StepError> {
    let started = now_ms();
    cx.deps().begin(cx)?;
    tokio::time::sleep(Duration::from_millis(u64::from(ctx.delays[step]))).await;
    cx.deps().apply(cx, step, "undo", started)
}

macro_rules! steps {
    ($($n:literal: $step:ident, $pivot:ident, $undo:ident;)*) => {$(
        #[saga_step(compensate = $undo, timeout = "40ms", retries = 2, backoff = "1ms")]
        async fn $step(ctx: &mut CrashCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
            act(ctx, cx, $n).await
        }

        // Not every position has a pivot in some saga.
        #[allow(dead_code)]
        #[saga_step(pivot, timeout = "40ms", retries = 2, backoff = "1ms")]
        async fn $pivot(ctx: &mut CrashCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
            act(ctx, cx, $n).await
        }

        async fn $undo(ctx: &mut CrashCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
            undo(ctx, cx, $n).await
        }
    )*};
}

steps! {
    0: step_0, pivot_0, undo_0;
    1: step_1, pivot_1, undo_1;
    2: step_2, pivot_2, undo_2;
    3: step_3, pivot_3, undo_3;
    4: step_4, pivot_4, undo_4;
    5: step_5, pivot_5, undo_5;
    6: step_6, pivot_6, undo_6;
    7: step_7, pivot_7, undo_7;
}

saga! { L1(CrashCtx, Ledger) { step_0 } }
saga! { L2(CrashCtx, Ledger) { step_0, step_1 } }
saga! { L3(CrashCtx, Ledger) { step_0, step_1, step_2 } }
saga! { L4(CrashCtx, Ledger) { step_0, step_1, step_2, step_3 } }
saga! { L5(CrashCtx, Ledger) { step_0, step_1, step_2, step_3, step_4 } }
saga! { L6(CrashCtx, Ledger) { step_0, step_1, step_2, step_3, step_4, step_5 } }
saga! { L7(CrashCtx, Ledger) { step_0, step_1, step_2, step_3, step_4, step_5, step_6 } }
saga! { L8(CrashCtx, Ledger) { step_0, step_1, step_2, step_3, step_4, step_5, step_6, step_7 } }
saga! { P1of2(CrashCtx, Ledger) { pivot_0, step_1 } }
saga! { P2of3(CrashCtx, Ledger) { step_0, pivot_1, step_2 } }
saga! { P3of5(CrashCtx, Ledger) { step_0, step_1, pivot_2, step_3, step_4 } }
saga! { P4of4(CrashCtx, Ledger) { step_0, step_1, step_2, pivot_3 } }
saga! { P6of8(CrashCtx, Ledger) { step_0, step_1, step_2, step_3, step_4, pivot_5, step_6, step_7 } }
/// The failpoint matrix's saga: a first, a middle, a pivot and a last step, named as in the
/// generated sagas (failpoints name steps). Its plans never time out, so its steps have a
/// generous timeout: the matrix is about crashes at durability boundaries, and a 40 ms timeout
/// can be exceeded three times in a row on a loaded 2-core machine (the soak runs beside it).
mod matrix {
    use saga_runtime::{saga, saga_step, Output, StepCx, StepError};

    use super::{act, undo, CrashCtx, Ledger};

    macro_rules! matrix_steps {
        ($($n:literal: $step:ident [$($attr:tt)*], $undo:ident;)*) => {$(
            #[saga_step($($attr)* timeout = "10s", retries = 2, backoff = "1ms")]
            pub(super) async fn $step(
                ctx: &mut CrashCtx,
                cx: &StepCx<Ledger>,
            ) -> Result<(), StepError> {
                act(ctx, cx, $n).await
            }

            #[allow(dead_code)]
            pub(super) async fn $undo(
                ctx: &mut CrashCtx,
                cx: &StepCx<Ledger>,
            ) -> Result<(), StepError> {
                undo(ctx, cx, $n).await
            }
        )*};
    }

    matrix_steps! {
        0: step_0 [compensate = undo_0,], undo_0;
        2: pivot_2 [pivot,], undo_2;
    }

    /// What `step_1` returns: recorded with its completion, it is all `undo_1` knows of the
    /// saga it undoes, so a rollback after a crash needs it read back from the store.
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    pub(super) struct Receipt {
        saga: String,
        token: u64,
    }

    #[saga_step(compensate = undo_1, timeout = "10s", retries = 2, backoff = "1ms")]
    pub(super) async fn step_1(
        ctx: &mut CrashCtx,
        cx: &StepCx<Ledger>,
    ) -> Result<Receipt, StepError> {
        act(ctx, cx, 1).await?;
        Ok(Receipt {
            saga: cx.saga_id().to_string(),
            token: cx.fencing_token(),
        })
    }

    /// Takes `step_1`'s receipt, read back from the store when a crash came in between.
    #[saga_step(compensate = undo_3, timeout = "10s", retries = 2, backoff = "1ms")]
    pub(super) async fn step_3(
        ctx: &mut CrashCtx,
        cx: &StepCx<Ledger>,
        receipt: Output<step_1>,
    ) -> Result<(), StepError> {
        if receipt.saga != cx.saga_id().to_string() {
            return Err(StepError::permanent("step_3 was given another receipt"));
        }
        act(ctx, cx, 3).await
    }

    #[allow(dead_code)]
    pub(super) async fn undo_3(ctx: &mut CrashCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
        undo(ctx, cx, 3).await
    }

    pub(super) async fn undo_1(
        ctx: &mut CrashCtx,
        cx: &StepCx<Ledger>,
        receipt: Receipt,
    ) -> Result<(), StepError> {
        if receipt.saga != cx.saga_id().to_string() || receipt.token > cx.fencing_token() {
            return Err(StepError::permanent("undo_1 was given another receipt"));
        }
        undo(ctx, cx, 1).await
    }

    saga! {
        pub(super) Matrix(CrashCtx, Ledger) { step_0, step_1, pivot_2, step_3 }
    }
}
use matrix::Matrix;

/// The failpoint matrix's parallel group: a step, three members at once, a step. The members
/// read the context only and return their step number, which `step_4` takes.
mod group_matrix {
    use saga_runtime::{saga, saga_step, Output, StepCx, StepError};

    use super::{act, undo, CrashCtx, Ledger};

    macro_rules! members {
        ($($n:literal: $step:ident, $undo:ident;)*) => {$(
            #[saga_step(compensate = $undo, timeout = "10s", retries = 2, backoff = "1ms")]
            pub(super) async fn $step(ctx: &CrashCtx, cx: &StepCx<Ledger>) -> Result<u32, StepError> {
                act(ctx, cx, $n).await.map(|()| $n)
            }

            pub(super) async fn $undo(
                ctx: &CrashCtx,
                cx: &StepCx<Ledger>,
                done: u32,
            ) -> Result<(), StepError> {
                if done != $n {
                    return Err(StepError::permanent("given another member's output"));
                }
                undo(ctx, cx, $n).await
            }
        )*};
    }

    members! {
        1: member_1, unbook_1;
        2: member_2, unbook_2;
        3: member_3, unbook_3;
    }

    #[saga_step(compensate = undo_0, timeout = "10s", retries = 2, backoff = "1ms")]
    pub(super) async fn step_0(ctx: &mut CrashCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
        act(ctx, cx, 0).await
    }

    pub(super) async fn undo_0(ctx: &mut CrashCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
        undo(ctx, cx, 0).await
    }

    #[saga_step(timeout = "10s", retries = 2, backoff = "1ms")]
    pub(super) async fn step_4(
        ctx: &mut CrashCtx,
        cx: &StepCx<Ledger>,
        first: Output<member_1>,
        third: Output<member_3>,
    ) -> Result<(), StepError> {
        if (*first, *third) != (1, 3) {
            return Err(StepError::permanent("given other members' outputs"));
        }
        act(ctx, cx, 4).await
    }

    saga! {
        pub(super) GroupMatrix(CrashCtx, Ledger) {
            step_0,
            parallel(member_1, member_2, member_3),
            step_4,
        }
    }
}
use group_matrix::GroupMatrix;

/// The group matrix's saga assembled at run time, its three members instances 1 to 3 of one
/// step: registered by name, and built again from the context when a worker resumes it.
mod built_matrix {
    use saga_runtime::{saga_step, BuildError, SagaDefinition, StepCx, StepError};

    use super::group_matrix::step_0;
    use super::{act, undo, CrashCtx, Ledger};

    /// Instance `i` of the group: position `i` of the plan.
    #[saga_step(compensate = unbook, timeout = "10s", retries = 2, backoff = "1ms")]
    pub(super) async fn member(ctx: &CrashCtx, cx: &StepCx<Ledger>) -> Result<u32, StepError> {
        let n = cx.instance().expect("an instance");
        act(ctx, cx, n).await.map(|()| n as u32)
    }

    async fn unbook(ctx: &CrashCtx, cx: &StepCx<Ledger>, done: u32) -> Result<(), StepError> {
        if Some(done as usize) != cx.instance() {
            return Err(StepError::permanent("given another instance's output"));
        }
        undo(ctx, cx, done as usize).await
    }

    #[saga_step(timeout = "10s", retries = 2, backoff = "1ms")]
    pub(super) async fn finish(ctx: &mut CrashCtx, cx: &StepCx<Ledger>) -> Result<(), StepError> {
        let last = ctx.plan.len() - 1;
        act(ctx, cx, last).await
    }

    /// `step_0`, one `member` instance per position between the first and the last of the plan
    /// at once, `finish`.
    pub(super) fn definition(
        ctx: &CrashCtx,
    ) -> Result<SagaDefinition<CrashCtx, Ledger>, BuildError> {
        SagaDefinition::builder("BuiltMatrix")
            .step::<step_0>()
            .parallel(|group| {
                for i in 1..ctx.plan.len() - 1 {
                    group.instance::<member>(i);
                }
            })
            .step::<finish>()
            .build()
    }
}

/// Starts saga `i` of `seed`: its type, plan and delays follow from the seed alone.
async fn start_generated(engine: &Engine, ledger: &Arc<Ledger>, seed: u64, i: u64) {
    let mut rng = fastrand::Rng::with_seed(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let kind = rng.usize(0..13);
    let len = [1, 2, 3, 4, 5, 6, 7, 8, 2, 3, 5, 4, 8][kind];
    let plan = (0..len)
        .map(|_| match rng.u8(0..100) {
            0..=79 => 0,
            80..=89 => 1,
            90..=94 => 2,
            95..=97 => 3,
            _ => 4,
        })
        .collect();
    let delays = (0..len).map(|_| rng.u8(0..6)).collect();
    let ctx = CrashCtx { plan, delays };
    let id = SagaId::from_uuid(uuid::Uuid::from_u64_pair(seed, i));
    let started = match kind {
        0 => start::<L1>(engine, ledger, ctx, id).await,
        1 => start::<L2>(engine, ledger, ctx, id).await,
        2 => start::<L3>(engine, ledger, ctx, id).await,
        3 => start::<L4>(engine, ledger, ctx, id).await,
        4 => start::<L5>(engine, ledger, ctx, id).await,
        5 => start::<L6>(engine, ledger, ctx, id).await,
        6 => start::<L7>(engine, ledger, ctx, id).await,
        7 => start::<L8>(engine, ledger, ctx, id).await,
        8 => start::<P1of2>(engine, ledger, ctx, id).await,
        9 => start::<P2of3>(engine, ledger, ctx, id).await,
        10 => start::<P3of5>(engine, ledger, ctx, id).await,
        11 => start::<P4of4>(engine, ledger, ctx, id).await,
        _ => start::<P6of8>(engine, ledger, ctx, id).await,
    };
    assert_eq!(started, id);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {i}").unwrap();
    out.flush().unwrap();
}

async fn start<S>(engine: &Engine, ledger: &Arc<Ledger>, ctx: CrashCtx, id: SagaId) -> SagaId
where
    S: Saga<Context = CrashCtx, Deps = Ledger>,
{
    engine
        .saga::<S>()
        .request(ctx)
        .deps(ledger.clone())
        .id(id)
        .start()
        .await
        .expect("start")
}

/// Waits until no saga in the store is left unfinished.
async fn drain(store: &str) {
    if let Some((url, schema)) = store.split_once('#') {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let query = format!("SELECT count(*) FROM {schema}.sagas WHERE NOT terminal");
        loop {
            // The database may be restarting: asked again.
            if let Ok(row) = client.query_one(&query, &[]).await {
                if row.get::<_, i64>(0) == 0 {
                    return;
                }
            }
            if client.is_closed() {
                return Box::pin(drain(store)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let conn = rusqlite::Connection::open(store).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    loop {
        let unfinished: i64 = conn
            .query_row("SELECT COUNT(*) FROM sagas WHERE terminal = 0", [], |r| {
                r.get(0)
            })
            .unwrap();
        if unfinished == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Planned panics are part of the test: one line each, not a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let args: Vec<String> = std::env::args().collect();
    let (store, ledger_path, mode) = (&args[1], &args[2], args[3].as_str());
    let ledger = Arc::new(Ledger::open(ledger_path));
    let builder = match store.split_once('#') {
        // `URL#SCHEMA`: a schema of a PostgreSQL database.
        Some((url, schema)) => {
            let store = saga_runtime::store::PostgresStore::options(url)
                .schema(schema)
                .connect()
                .await
                .expect("store opens");
            Engine::builder().store(store)
        }
        None => Engine::builder().sqlite(store).expect("store opens"),
    };
    let builder = match mode {
        // One of several workers: a name of its own, and a short lease so that the test sees
        // takeovers within seconds.
        "fleet" => {
            let lease = Duration::from_millis(args[5].parse().unwrap());
            builder.lease(lease).renew_interval(lease / 5)
        }
        // One worker, restarted after each kill: under the same name it takes back at once what
        // its killed incarnation held, instead of waiting for those leases to expire.
        _ => builder.worker_id("crash-worker"),
    };
    let engine = register_all(builder, &ledger)
        // The test kills the worker every ~60 ms, far more often than any real worker dies: a
        // slow step is interrupted many times in a row without being at fault. The rule itself
        // (default 5) is tested in bad_data.rs.
        .max_recovery_attempts(25)
        .build();
    let report = engine.recover().await.expect("recovery");
    eprintln!(
        "recovered {} parked {}",
        report.resumed.len(),
        report.parked.len()
    );
    match mode {
        "soak" => {
            let seed: u64 = args[4].parse().unwrap();
            let (from, to): (u64, u64) = (args[5].parse().unwrap(), args[6].parse().unwrap());
            for i in from..to {
                start_generated(&engine, &ledger, seed, i).await;
            }
        }
        "keyed" => {
            // Started by several processes at once: each key must make one saga.
            let count: u64 = args[4].parse().unwrap();
            for i in 0..count {
                let id = engine
                    .saga::<L3>()
                    .request(CrashCtx {
                        plan: vec![0; 3],
                        delays: vec![0; 3],
                    })
                    .deps(ledger.clone())
                    .idempotency_key(format!("order-{i}"))
                    .start()
                    .await
                    .expect("start");
                println!("STARTED {i} {id}");
            }
        }
        "one" => {
            let id: SagaId = args[4].parse().unwrap();
            let fail_pivot = args[5] == "fail-pivot";
            let plan = vec![0, 0, if fail_pivot { 2 } else { 0 }, 0];
            let ctx = CrashCtx {
                plan,
                delays: vec![1; 4],
            };
            start::<Matrix>(&engine, &ledger, ctx, id).await;
        }
        "group" | "built" => {
            // Members end in turn (1, 2, then 3); with `fail-member` the last one fails for
            // good once the other two completed, and both are compensated at once; with
            // `fail-first` the first one fails for good while the other two still run (they
            // finish, then both are compensated at once).
            let id: SagaId = args[4].parse().unwrap();
            let plan = match args[5].as_str() {
                "fail-member" => vec![0, 0, 0, 2, 0],
                "fail-first" => vec![0, 2, 0, 0, 0],
                _ => vec![0; 5],
            };
            let ctx = CrashCtx {
                plan,
                delays: vec![1, 1, 3, 5, 1],
            };
            match mode {
                "group" => start::<GroupMatrix>(&engine, &ledger, ctx, id).await,
                _ => built_matrix::definition(&ctx)
                    .expect("the definition builds")
                    .on(&engine)
                    .request(ctx)
                    .deps(ledger.clone())
                    .id(id)
                    .start()
                    .await
                    .expect("start"),
            };
        }
        "fleet" => {
            if std::env::var_os("FLEET_LOG").is_some() {
                tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::WARN)
                    .with_writer(std::io::stderr)
                    .init();
            }
            println!("OWNER {}", engine.worker_id());
            let seed: u64 = args[4].parse().unwrap();
            let reporter = engine.clone();
            tokio::spawn(async move {
                let mut reported = (0, 0);
                loop {
                    let now = (reporter.fenced_writes(), reporter.lost_leases());
                    if now != reported {
                        reported = now;
                        println!("FENCED {}", now.0);
                        println!("LOST {}", now.1);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            let (asked, mut to_start) = tokio::sync::mpsc::unbounded_channel();
            std::thread::spawn(move || {
                for line in std::io::stdin().lines().map_while(Result::ok) {
                    let Ok(i) = line.trim().parse::<u64>() else {
                        continue;
                    };
                    if asked.send(i).is_err() {
                        return;
                    }
                }
            });
            let stop = std::path::Path::new(ledger_path).with_file_name("stop");
            while !stop.exists() {
                tokio::select! {
                    Some(i) = to_start.recv() => start_generated(&engine, &ledger, seed, i).await,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            return;
        }
        other => panic!("unknown mode {other}"),
    }
    drain(store).await;
    // The store says every saga ended, but a run here may not have finished with its last
    // commit yet (its failpoints after that commit, its outcome): exiting now would cut it off,
    // and a failpoint at the last checkpoint would seem never reached.
    while engine.running_sagas() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `builder` with every saga type of this program registered.
fn register_all(
    builder: saga_runtime::EngineBuilder,
    ledger: &Arc<Ledger>,
) -> saga_runtime::EngineBuilder {
    builder
        .register::<L1>(ledger.clone())
        .register::<L2>(ledger.clone())
        .register::<L3>(ledger.clone())
        .register::<L4>(ledger.clone())
        .register::<L5>(ledger.clone())
        .register::<L6>(ledger.clone())
        .register::<L7>(ledger.clone())
        .register::<L8>(ledger.clone())
        .register::<P1of2>(ledger.clone())
        .register::<P2of3>(ledger.clone())
        .register::<P3of5>(ledger.clone())
        .register::<P4of4>(ledger.clone())
        .register::<P6of8>(ledger.clone())
        .register::<Matrix>(ledger.clone())
        .register::<GroupMatrix>(ledger.clone())
        .register_definition("BuiltMatrix", ledger.clone(), built_matrix::definition)
}
