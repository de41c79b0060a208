//! What the crash tests share: the files a run uses, the worker command, and the checks of the
//! store and the effects ledger at the end (included by `crash.rs` and `fleet.rs`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;
use serde_json::Value;

pub const WORKER: &str = env!("CARGO_BIN_EXE_crash_worker");

pub struct Files {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub ledger: PathBuf,
}

pub fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let ledger = dir.path().join("ledger.db");
    Files { dir, store, ledger }
}

pub fn worker(files: &Files, args: &[&str], failpoint: Option<&str>) -> Command {
    let mut command = Command::new(WORKER);
    command.arg(&files.store).arg(&files.ledger).args(args);
    command
        .env_remove("SAGA_FAILPOINT")
        .env("RUST_BACKTRACE", "0");
    if let Some(point) = failpoint {
        command.env("SAGA_FAILPOINT", point);
    }
    command
}

pub fn integrity_ok(path: &Path) {
    let conn = Connection::open(path).unwrap();
    let result: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(result, "ok", "integrity_check of {}", path.display());
}

/// A saga as the store has it.
pub struct Stored {
    pub steps: Vec<String>,
    pub status: Value,
    pub completed: Vec<Value>,
}

pub fn stored(path: &Path) -> BTreeMap<String, Stored> {
    let conn = Connection::open(path).unwrap();
    // A worker killed in its first milliseconds may not have created the schema yet.
    let schema: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sagas')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if !schema {
        return BTreeMap::new();
    }
    let mut statement = conn
        .prepare(
            "SELECT id, steps, status, coalesce(json_extract(state, '$.completed'), '[]') FROM sagas",
        )
        .unwrap();
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .unwrap();
    rows.map(|row| {
        let (id, steps, status, completed) = row.unwrap();
        let stored = Stored {
            steps: serde_json::from_str(&steps).unwrap(),
            status: serde_json::from_str(&status).unwrap(),
            completed: serde_json::from_str(&completed).unwrap(),
        };
        (id, stored)
    })
    .collect()
}

/// How far along a status is; statuses must never go down.
pub fn rank(status: &Value, steps: usize) -> u64 {
    let step = status["step"].as_u64().unwrap_or(0);
    match status["status"].as_str().unwrap() {
        "pending" => 0,
        "running" => 1 + step,
        "compensating" => 100 + (steps as u64 - step),
        _ => 1000,
    }
}

/// The ledger: per saga, its effects in the order they were first applied.
pub fn ledger(path: &Path) -> (HashMap<String, Vec<(String, u64)>>, u64) {
    let conn = Connection::open(path).unwrap();
    let mut effects: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    let mut statement = conn
        .prepare("SELECT saga, kind, step, applied FROM effects ORDER BY seq")
        .unwrap();
    let mut reapplied = 0;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
            ))
        })
        .unwrap();
    for row in rows {
        let (saga, kind, step, applied) = row.unwrap();
        reapplied += applied - 1;
        effects.entry(saga).or_default().push((kind, step));
    }
    (effects, reapplied)
}

/// Checks one saga's final state against its effects.
pub fn check_consistent(id: &str, saga: &Stored, effects: &[(String, u64)]) {
    let status = saga.status["status"].as_str().unwrap();
    let done: Vec<u64> = effects
        .iter()
        .filter(|(k, _)| k == "do")
        .map(|(_, s)| *s)
        .collect();
    let undone: Vec<u64> = effects
        .iter()
        .filter(|(k, _)| k == "undo")
        .map(|(_, s)| *s)
        .collect();
    let completed: Vec<u64> = saga
        .completed
        .iter()
        .filter(|c| !c["timed_out"].as_bool().unwrap_or(false))
        .map(|c| c["step"].as_u64().unwrap())
        .collect();
    let pivot_done = completed
        .iter()
        .any(|s| saga.steps[*s as usize].starts_with("pivot"));
    match status {
        "completed" => {
            let all: Vec<u64> = (0..saga.steps.len() as u64).collect();
            assert_eq!(done, all, "{id}: every step applied once, in order");
            assert!(undone.is_empty(), "{id}: nothing compensated");
        }
        "compensated" => {
            assert_eq!(
                done, completed,
                "{id}: the ledger holds exactly the completed steps"
            );
            let mut expected: Vec<u64> = completed.iter().rev().copied().collect();
            // Steps without a compensation (pivots) are skipped.
            expected.retain(|s| !saga.steps[*s as usize].starts_with("pivot"));
            assert_eq!(
                undone, expected,
                "{id}: compensated the completed steps in reverse order"
            );
            assert!(!pivot_done, "{id}: compensated after its pivot");
        }
        "failed" => {
            assert!(pivot_done, "{id}: failed without passing its pivot");
            assert!(
                undone.is_empty(),
                "{id}: nothing compensated after the pivot"
            );
            assert_eq!(
                done, completed,
                "{id}: the ledger holds exactly the completed steps"
            );
        }
        "parked" => assert!(saga.status["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())),
        other => panic!("{id}: not terminal at the end: {other}"),
    }
}

pub fn seed() -> u64 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed: {seed} (replay with CRASH_SEED={seed})");
    seed
}

pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Every acknowledged saga of `seed` (indices `0..sagas`) is in the store, terminal and
/// consistent with its effects; returns the stored sagas and how many effects were applied
/// again (deduplicated by key).
pub fn check_every_saga(files: &Files, seed: u64, sagas: u64) -> (BTreeMap<String, Stored>, u64) {
    let sagas_stored = stored(&files.store);
    let (effects, reapplied) = ledger(&files.ledger);
    for i in 0..sagas {
        let id = uuid::Uuid::from_u64_pair(seed, i).to_string();
        let saga = sagas_stored
            .get(&id)
            .unwrap_or_else(|| panic!("acknowledged saga {i} ({id}) lost"));
        check_consistent(
            &id,
            saga,
            effects.get(&id).map(Vec::as_slice).unwrap_or(&[]),
        );
    }
    (sagas_stored, reapplied)
}
