//! What a durable saga costs against the same bookkeeping written by hand on SQLite.
//!
//! Both sides record a 3-step process whose steps do no work beyond writing one field of a small
//! context, in a SQLite file in WAL mode, at `synchronous = FULL` (every commit is fsynced; the
//! runtime's default) and at `synchronous = NORMAL` (`Durability::Normal`: the WAL is fsynced at
//! checkpoints only):
//!
//! - `saga_sequential_{full,normal}` runs `BenchSaga` on `Engine::builder().sqlite_with(..)`,
//!   one saga at a time. The runtime commits 4 times per saga (the saga with its start event and
//!   the first step's intent; each completion together with the next intent; the last
//!   completion with the end).
//! - `raw_sequential_{full,normal}` does the same 5 commits with rusqlite directly: insert the
//!   saga row, update it after each step with the step's status and the context as JSON, then a
//!   final update; one transaction each.
//! - `raw_sequential_history_{full,normal}` does by hand what the store recorded until its
//!   schema version 7: 4 commits as the runtime's, a history row per transition (8) and an
//!   index of unfinished sagas. (Since version 7 the store appends a saga's newest entries to
//!   its row, as `raw_grouped_100_history_in_row_full` does.)
//! - `saga_concurrent_1000_full_{multi,current}_thread` runs 1,000 sagas at once, on a
//!   multi-thread and on a current-thread runtime, and waits for all: the store's writer thread
//!   group-commits whatever is queued, so they share fsyncs.
//! - `raw_grouped_100_full` is the best the hand-written side can do with batching: the same 5
//!   statements per saga, 100 sagas per transaction (10 transactions per 1,000 sagas).
//! - `raw_grouped_100_history_full` and `raw_grouped_100_history_in_row_full` add by hand what
//!   the store keeps (an index of unfinished sagas, a history entry per transition): a history
//!   row per entry, or the entries appended to the saga's own row by the 5 statements that write
//!   it anyway. Ceilings for `saga_concurrent_1000_*` with the store's layout before schema
//!   version 7 and with the history kept in the row (since).
//!
//! Throughput is in sagas: one iteration of a `*_sequential_*` bench completes one saga, one
//! iteration of the others completes 1,000. Each bench gets a fresh database file (it grows
//! over the bench's iterations, as a real one would).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use rusqlite::{params, Connection, TransactionBehavior};
use saga_runtime::store::Durability;
use saga_runtime::Engine;

mod common;

use common::{run_saga, run_sagas, BenchCtx, GROUP, SAGAS};

// ---------------------------------------------------------------------------------------------
// The same by hand.

fn open_raw(path: &Path, synchronous: &str) -> Connection {
    let conn = Connection::open(path).expect("open the raw database");
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", synchronous)
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE sagas (
             id         TEXT PRIMARY KEY,
             saga_type  TEXT NOT NULL,
             status     TEXT NOT NULL,
             step       INTEGER NOT NULL,
             context    TEXT NOT NULL,
             created_at INTEGER NOT NULL,
             updated_at INTEGER NOT NULL
         );",
    )
    .unwrap();
    conn
}

/// [`open_raw`], with what the store keeps besides the row: a history entry per transition and
/// an index of unfinished sagas (for `raw_sequential_history_*` only: the index costs every
/// status change).
fn open_raw_with_history(path: &Path, synchronous: &str) -> Connection {
    let conn = open_raw(path, synchronous);
    conn.execute_batch(
        "CREATE TABLE history (
             key   INTEGER PRIMARY KEY,
             saga  TEXT NOT NULL,
             event TEXT NOT NULL
         );
         CREATE INDEX unfinished ON sagas (id) WHERE status != 'completed';",
    )
    .unwrap();
    conn
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A hand-written saga: its row's id and its context. Each method is one statement; the caller
/// decides what a transaction holds.
struct RawSaga {
    id: String,
    ctx: BenchCtx,
}

impl RawSaga {
    fn new(order: u64) -> Self {
        RawSaga {
            // Time-ordered, as the store's own ids: random keys would scatter each insert over
            // the primary key's b-tree and cost the hand-written side about 4x.
            id: uuid::Uuid::now_v7().to_string(),
            ctx: BenchCtx {
                order,
                ..BenchCtx::default()
            },
        }
    }

    fn start(&self, conn: &Connection) {
        let context = serde_json::to_string(&self.ctx).unwrap();
        conn.prepare_cached(
            "INSERT INTO sagas (id, saga_type, status, step, context, created_at, updated_at)
             VALUES (?1, 'BenchSaga', 'running', 0, ?2, ?3, ?3)",
        )
        .unwrap()
        .execute(params![self.id, context, now()])
        .unwrap();
    }

    /// Runs step `step` and records its completion with the new context.
    fn step(&mut self, conn: &Connection, step: i64) {
        match step {
            0 => self.ctx.a = 1,
            1 => self.ctx.b = 2,
            _ => self.ctx.c = 3,
        }
        let context = serde_json::to_string(&self.ctx).unwrap();
        let changed = conn
            .prepare_cached(
                "UPDATE sagas SET status = 'running', step = ?2, context = ?3, updated_at = ?4
                 WHERE id = ?1",
            )
            .unwrap()
            .execute(params![self.id, step + 1, context, now()])
            .unwrap();
        assert_eq!(changed, 1);
    }

    fn end(&self, conn: &Connection) {
        let changed = conn
            .prepare_cached("UPDATE sagas SET status = 'completed', updated_at = ?2 WHERE id = ?1")
            .unwrap()
            .execute(params![self.id, now()])
            .unwrap();
        assert_eq!(changed, 1);
    }
}

/// `f` in its own immediate transaction.
fn in_transaction(conn: &mut Connection, f: impl FnOnce(&Connection)) {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    f(&tx);
    tx.commit().unwrap();
}

/// One saga, 5 commits.
fn raw_sequential(conn: &mut Connection, order: u64) {
    let mut saga = RawSaga::new(order);
    in_transaction(conn, |tx| saga.start(tx));
    for step in 0..3 {
        in_transaction(conn, |tx| saga.step(tx, step));
    }
    in_transaction(conn, |tx| saga.end(tx));
}

/// One saga with the bookkeeping the store does, by hand: 4 commits (the row with the start
/// and the first step's start; each step's end with the next one's start; the last step's end
/// with the saga's), each transition a history row, an index of unfinished sagas. What a
/// durable saga records at best, as a ceiling for `saga_sequential_*`.
fn raw_sequential_history(conn: &mut Connection, order: u64, key: &mut i64) {
    let mut saga = RawSaga::new(order);
    let id = saga.id.clone();
    let mut event = |tx: &Connection, what: &str| {
        *key += 1;
        tx.prepare_cached("INSERT INTO history (key, saga, event) VALUES (?1, ?2, ?3)")
            .unwrap()
            .execute(params![
                *key,
                id,
                format!(r#"{{"event":"{what}","at":{}}}"#, now())
            ])
            .unwrap();
    };
    in_transaction(conn, |tx| {
        saga.start(tx);
        event(tx, "saga_started");
        event(tx, "step_started");
    });
    for step in 0..3 {
        in_transaction(conn, |tx| {
            saga.step(tx, step);
            event(tx, "step_completed");
            if step < 2 {
                event(tx, "step_started");
            } else {
                saga.end(tx);
                event(tx, "saga_completed");
            }
        });
    }
}

/// `SAGAS` sagas, `GROUP` per transaction.
fn raw_grouped(conn: &mut Connection) {
    for group in 0..SAGAS / GROUP {
        in_transaction(conn, |tx| {
            for i in 0..GROUP {
                let mut saga = RawSaga::new((group * GROUP + i) as u64);
                saga.start(tx);
                for step in 0..3 {
                    saga.step(tx, step);
                }
                saga.end(tx);
            }
        });
    }
}

/// [`raw_grouped`] with the bookkeeping `raw_sequential_history` does: the history a row per
/// transition (`in_row = false`), or appended to the saga's own row by the statement that
/// writes the row anyway (`in_row = true`: still 5 statements a saga).
fn raw_grouped_history(conn: &mut Connection, in_row: bool, key: &mut i64) {
    let events = |names: &[&str]| -> String {
        let at = now();
        names
            .iter()
            .map(|what| format!(r#"{{"event":"{what}","at":{at}}}"#))
            .collect()
    };
    for group in 0..SAGAS / GROUP {
        in_transaction(conn, |tx| {
            for i in 0..GROUP {
                let mut saga = RawSaga::new((group * GROUP + i) as u64);
                let id = saga.id.clone();
                let mut rows = |history: String| {
                    for event in history.split_inclusive('}') {
                        *key += 1;
                        tx.prepare_cached(
                            "INSERT INTO history (key, saga, event) VALUES (?1, ?2, ?3)",
                        )
                        .unwrap()
                        .execute(params![*key, id, event])
                        .unwrap();
                    }
                };
                let started = events(&["saga_started", "step_started"]);
                if in_row {
                    let context = serde_json::to_string(&saga.ctx).unwrap();
                    tx.prepare_cached(
                        "INSERT INTO sagas (id, saga_type, status, step, context, created_at,
                                            updated_at, history)
                         VALUES (?1, 'BenchSaga', 'running', 0, ?2, ?3, ?3, ?4)",
                    )
                    .unwrap()
                    .execute(params![id, context, now(), started])
                    .unwrap();
                } else {
                    saga.start(tx);
                    rows(started);
                }
                for step in 0..3 {
                    let names = ["step_completed", "step_started"];
                    let history = events(&names[..2 - step as usize / 2]);
                    if in_row {
                        match step {
                            0 => saga.ctx.a = 1,
                            1 => saga.ctx.b = 2,
                            _ => saga.ctx.c = 3,
                        }
                        let context = serde_json::to_string(&saga.ctx).unwrap();
                        tx.prepare_cached(
                            "UPDATE sagas SET status = 'running', step = ?2, context = ?3,
                                 updated_at = ?4, history = history || ?5
                             WHERE id = ?1",
                        )
                        .unwrap()
                        .execute(params![id, step + 1, context, now(), history])
                        .unwrap();
                    } else {
                        saga.step(tx, step);
                        rows(history);
                    }
                }
                let ended = events(&["saga_completed"]);
                if in_row {
                    tx.prepare_cached(
                        "UPDATE sagas SET status = 'completed', updated_at = ?2,
                             history = history || ?3
                         WHERE id = ?1",
                    )
                    .unwrap()
                    .execute(params![id, now(), ended])
                    .unwrap();
                } else {
                    saga.end(tx);
                    rows(ended);
                }
            }
        });
    }
}

fn completed_rows(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM sagas WHERE status = 'completed' AND step = 3",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------

/// An engine on a fresh SQLite file in `dir`.
fn engine(dir: &Path, durability: Durability) -> Engine {
    Engine::builder()
        .sqlite_with(dir.join("saga.db"), durability)
        .unwrap()
        .build()
}

fn durable(c: &mut Criterion) {
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let mut group = c.benchmark_group("durable");
    // Iterations take milliseconds (sequential: 5 fsyncs) to a fraction of a second (1,000
    // sagas): flat sampling with few samples keeps the whole run to a few minutes.
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(2));

    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(15));
    for (durability, synchronous) in [(Durability::Full, "FULL"), (Durability::Normal, "NORMAL")] {
        let suffix = synchronous.to_lowercase();
        {
            let dir = tempfile::tempdir().unwrap();
            let engine = engine(dir.path(), durability);
            multi.block_on(run_saga(engine.clone(), 0));
            group.bench_function(format!("saga_sequential_{suffix}"), |b| {
                b.to_async(&multi).iter(|| run_saga(engine.clone(), 0))
            });
        }
        {
            let dir = tempfile::tempdir().unwrap();
            let mut conn = open_raw(&dir.path().join("raw.db"), synchronous);
            raw_sequential(&mut conn, 0);
            assert_eq!(completed_rows(&conn), 1);
            group.bench_function(format!("raw_sequential_{suffix}"), |b| {
                b.iter(|| raw_sequential(&mut conn, 0))
            });
        }
        {
            let dir = tempfile::tempdir().unwrap();
            let mut conn = open_raw_with_history(&dir.path().join("raw.db"), synchronous);
            let mut key = 0;
            raw_sequential_history(&mut conn, 0, &mut key);
            assert_eq!((completed_rows(&conn), key), (1, 8));
            group.bench_function(format!("raw_sequential_history_{suffix}"), |b| {
                b.iter(|| raw_sequential_history(&mut conn, 0, &mut key))
            });
        }
    }

    group.throughput(Throughput::Elements(SAGAS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (rt, flavour) in [(&multi, "multi_thread"), (&current, "current_thread")] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), Durability::Full);
        rt.block_on(run_sagas(&engine));
        group.bench_function(format!("saga_concurrent_1000_full_{flavour}"), |b| {
            b.to_async(rt).iter(|| run_sagas(&engine))
        });
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_raw(&dir.path().join("raw.db"), "FULL");
        raw_grouped(&mut conn);
        assert_eq!(completed_rows(&conn), SAGAS as i64);
        group.bench_function("raw_grouped_100_full", |b| {
            b.iter(|| raw_grouped(&mut conn))
        });
    }
    for in_row in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_raw_with_history(&dir.path().join("raw.db"), "FULL");
        conn.execute_batch("ALTER TABLE sagas ADD COLUMN history TEXT NOT NULL DEFAULT ''")
            .unwrap();
        let mut key = 0;
        raw_grouped_history(&mut conn, in_row, &mut key);
        let name = match in_row {
            false => "raw_grouped_100_history_full",
            true => "raw_grouped_100_history_in_row_full",
        };
        group.bench_function(name, |b| {
            b.iter(|| raw_grouped_history(&mut conn, in_row, &mut key))
        });
    }
    group.finish();
}

/// `DURABLE_ROUNDS=N` runs N rounds of 1,000 sagas at once on a fresh file (with `Durability::Off`
/// when `DURABLE_OFF` is set, to count the runtime's own work without fsyncs; on a
/// current-thread runtime when `DURABLE_CURRENT_THREAD` is set) and exits: for `valgrind
/// --tool=callgrind`. Otherwise, the criterion benchmarks.
fn main() {
    if let Some(rounds) = std::env::var("DURABLE_ROUNDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
    {
        let rt = match std::env::var_os("DURABLE_CURRENT_THREAD") {
            Some(_) => tokio::runtime::Builder::new_current_thread(),
            None => tokio::runtime::Builder::new_multi_thread(),
        }
        .enable_all()
        .build()
        .expect("a tokio runtime");
        let dir = tempfile::tempdir().unwrap();
        let durability = match std::env::var_os("DURABLE_OFF") {
            Some(_) => Durability::Off,
            None => Durability::Full,
        };
        let engine = engine(dir.path(), durability);
        for _ in 0..rounds {
            rt.block_on(run_sagas(&engine));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

criterion_group!(benches, durable);
