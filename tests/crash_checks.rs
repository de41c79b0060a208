//! What the crash tests share: the files a run uses, the worker command, and the checks of the
//! store and the effects ledger at the end (included by `crash.rs` and `fleet.rs`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;
use serde_json::Value;

pub const WORKER: &str = env!("CARGO_BIN_EXE_crash_worker");

/// Where a run's store is: a SQLite file, or a schema of a PostgreSQL database.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub ledger: PathBuf,
    /// The PostgreSQL URL and schema, when the store is there rather than in `store`.
    pub postgres: Option<(String, String)>,
}

/// A run on a SQLite file.
pub fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let ledger = dir.path().join("ledger.db");
    Files {
        dir,
        store,
        ledger,
        postgres: None,
    }
}

/// A run on a fresh schema of the PostgreSQL database at `url` (dropped with the files).
pub fn files_on_postgres(url: &str, prefix: &str) -> Files {
    let mut files = files();
    files.postgres = Some((url.to_owned(), saga_tests::fresh_schema(prefix)));
    files
}

impl Files {
    /// How the worker is told where the store is: the file, or `URL#SCHEMA`.
    pub fn store_arg(&self) -> String {
        match &self.postgres {
            Some((url, schema)) => format!("{url}#{schema}"),
            None => self.store.display().to_string(),
        }
    }

    /// The file whose existence tells fleet workers to stop.
    pub fn stop_file(&self) -> PathBuf {
        self.dir.path().join("stop")
    }

    /// Reads the store.
    pub fn reader(&self) -> Reader {
        match &self.postgres {
            Some((url, schema)) => Reader::postgres(url, schema),
            None => Reader::Sqlite(self.store.clone()),
        }
    }

    /// The store is sound: SQLite's integrity check (PostgreSQL checks its own).
    pub fn integrity_ok(&self) {
        if self.postgres.is_none() {
            integrity_ok(&self.store);
        }
    }

    /// Every saga as the store has it.
    pub fn stored(&self) -> BTreeMap<String, Stored> {
        self.reader().stored()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        if let Some((url, schema)) = &self.postgres {
            // Kept when the test failed, to be looked at.
            if !std::thread::panicking() {
                Reader::postgres(url, schema)
                    .sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// Reads what the store has, on either database.
pub enum Reader {
    Sqlite(PathBuf),
    Postgres {
        runtime: tokio::runtime::Runtime,
        /// Replaced when the database restarted under it.
        client: std::cell::RefCell<std::rc::Rc<tokio_postgres::Client>>,
        url: String,
        schema: String,
    },
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

impl Reader {
    fn postgres(url: &str, schema: &str) -> Reader {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .block_on(connect(url))
            .expect("PostgreSQL at SAGA_POSTGRES_URL");
        Reader::Postgres {
            runtime,
            client: std::cell::RefCell::new(std::rc::Rc::new(client)),
            url: url.to_owned(),
            schema: schema.to_owned(),
        }
    }

    fn sql(&self, statements: &str) {
        self.on_postgres(|client| async move { client.batch_execute(statements).await });
    }

    /// `query` on the PostgreSQL connection, again (reconnected) while the database restarts.
    fn on_postgres<T, F>(&self, query: impl Fn(std::rc::Rc<tokio_postgres::Client>) -> F) -> T
    where
        F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let Reader::Postgres {
            runtime,
            client,
            url,
            ..
        } = self
        else {
            unreachable!("only called on PostgreSQL")
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let current = client.borrow().clone();
            match runtime.block_on(query(current)) {
                Ok(answer) => return answer,
                Err(error) if std::time::Instant::now() < deadline => {
                    eprintln!("reading the store: {error}; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    if let Ok(fresh) = runtime.block_on(connect(url)) {
                        *client.borrow_mut() = std::rc::Rc::new(fresh);
                    }
                }
                Err(error) => panic!("reading the store: {error}"),
            }
        }
    }

    /// Rows of `query` (written for both databases, `{sagas}` and `{history}` standing for the
    /// tables), each as text columns.
    fn rows(&self, query: &str, params: &[Param]) -> Vec<Vec<Option<String>>> {
        match self {
            Reader::Sqlite(path) => {
                let conn = Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(30))
                    .unwrap();
                let exists: bool = conn
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sagas')",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                if !exists {
                    return Vec::new();
                }
                let query = query
                    .replace("{sagas}", "sagas")
                    .replace("{history}", SQLITE_HISTORY)
                    .replace(
                        "{history_saga}",
                        "(SELECT id FROM sagas WHERE seq = h.saga)",
                    )
                    .replace("{order}", "h.saga, h.n")
                    .replace("{not_terminal}", "terminal = 0");
                let mut statement = conn.prepare(&query).unwrap();
                let columns = statement.column_count();
                let params: Vec<rusqlite::types::Value> = params
                    .iter()
                    .map(|p| match p {
                        Param::Text(t) => rusqlite::types::Value::Text(t.clone()),
                        Param::Int(i) => rusqlite::types::Value::Integer(*i),
                    })
                    .collect();
                let rows = statement
                    .query_map(rusqlite::params_from_iter(params), |r| {
                        (0..columns)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => None,
                                    rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                                    other => Some(other.as_str()?.to_owned()),
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .unwrap();
                rows.map(Result::unwrap).collect()
            }
            Reader::Postgres { schema, .. } => {
                let query = query
                    .replace("{sagas}", &format!("{schema}.sagas"))
                    .replace("{history}", &format!("{schema}.saga_history"))
                    .replace("{history_saga}", "h.saga")
                    .replace("{order}", "h.saga, h.n")
                    .replace("{not_terminal}", "NOT terminal");
                // The simple protocol gives every column as text, whatever its type; the
                // parameters are written into the query as literals.
                let mut query = query;
                for (i, param) in params.iter().enumerate().rev() {
                    let literal = match param {
                        Param::Text(t) => format!("'{}'", t.replace('\'', "''")),
                        Param::Int(n) => n.to_string(),
                    };
                    query = query.replace(&format!("${}", i + 1), &literal);
                }
                let table = format!("{schema}.sagas");
                let exists = self.on_postgres(|client| {
                    let table = table.clone();
                    async move {
                        let row = client
                            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                            .await?;
                        Ok(row.get::<_, bool>(0))
                    }
                });
                if !exists {
                    return Vec::new();
                }
                let messages = self.on_postgres(|client| {
                    let query = query.clone();
                    async move { client.simple_query(&query).await }
                });
                messages
                    .into_iter()
                    .filter_map(|message| match message {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_owned))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect()
            }
        }
    }

    /// Every saga as the store has it.
    pub fn stored(&self) -> BTreeMap<String, Stored> {
        self.rows("SELECT id, steps, status, state FROM {sagas}", &[])
            .into_iter()
            .map(|row| {
                let text = |i: usize| row[i].clone().unwrap();
                let state: Value = serde_json::from_str(&text(3)).unwrap();
                let stored = Stored {
                    steps: serde_json::from_str(&text(1)).unwrap(),
                    status: serde_json::from_str(&text(2)).unwrap(),
                    completed: state["completed"].as_array().cloned().unwrap_or_default(),
                };
                (text(0), stored)
            })
            .collect()
    }

    /// How many sagas are not terminal.
    pub fn unfinished(&self) -> i64 {
        self.rows("SELECT count(*) FROM {sagas} WHERE {not_terminal}", &[])
            .first()
            .and_then(|row| row[0].as_ref())
            .map_or(0, |n| n.parse().unwrap())
    }

    /// Non-terminal sagas whose live lease `owner` holds now.
    pub fn held_by(&self, owner: &str, now_ms: i64) -> Vec<String> {
        self.rows(
            "SELECT id FROM {sagas} WHERE {not_terminal} AND owner = $1 AND lease_until > $2",
            &[Param::Text(owner.to_owned()), Param::Int(now_ms)],
        )
        .into_iter()
        .filter_map(|row| row[0].clone())
        .collect()
    }

    /// Every saga's history, oldest first.
    pub fn histories(&self) -> HashMap<String, Vec<Value>> {
        let mut histories: HashMap<String, Vec<Value>> = HashMap::new();
        let rows = self.rows(
            "SELECT {history_saga} AS saga, h.event FROM {history} h ORDER BY {order}",
            &[],
        );
        for row in rows {
            histories
                .entry(row[0].clone().unwrap())
                .or_default()
                .push(entry(row[1].as_deref().unwrap()));
        }
        histories
    }

    /// Saga `id`'s history, oldest first.
    pub fn history(&self, id: &str) -> Vec<Value> {
        let rows = match self {
            Reader::Sqlite(_) => self.rows(
                "SELECT h.event FROM {history} h JOIN sagas s ON s.seq = h.saga
                 WHERE s.id = $1 ORDER BY h.n",
                &[Param::Text(id.to_owned())],
            ),
            Reader::Postgres { .. } => self.rows(
                "SELECT h.event FROM {history} h WHERE h.saga = $1 ORDER BY h.n",
                &[Param::Text(id.to_owned())],
            ),
        };
        rows.into_iter()
            .map(|row| entry(row[0].as_deref().unwrap()))
            .collect()
    }
}

/// A stored history entry as a JSON object `{"at":..,"kind":{"event":..,..}}`: as it is stored,
/// or, from SQLite's short form (schema version 8: `[at, code, fields..]` for the commonest
/// kinds), rebuilt with its time, its kind's name and its step.
fn entry(text: &str) -> Value {
    let value: Value = serde_json::from_str(text).unwrap();
    let Some(items) = value.as_array() else {
        return value;
    };
    let names = [
        "saga_started",
        "step_started",
        "step_completed",
        "step_compensated",
        "saga_completed",
        "saga_compensated",
    ];
    let code = items[1].as_u64().unwrap() as usize;
    let mut kind = serde_json::json!({ "event": names[code] });
    if (1..=3).contains(&code) {
        kind["step"] = items[2].clone();
    }
    serde_json::json!({ "at": items[0], "kind": kind })
}

/// SQLite's history entries as rows `(saga, n, event)`, read here without the store's code:
/// `saga_history`'s rows, and the newest entries each saga's row keeps (since schema version 7:
/// `history` holds entries `history_from..`, each followed by a newline), split in SQL.
const SQLITE_HISTORY: &str = "(WITH RECURSIVE kept(saga, n, rest, event) AS (
        SELECT seq, history_from - 1, history, NULL FROM sagas
        UNION ALL
        SELECT saga, n + 1, substr(rest, instr(rest, char(10)) + 1),
               substr(rest, 1, instr(rest, char(10)) - 1)
        FROM kept WHERE rest <> ''
    )
    SELECT saga, n, event FROM kept WHERE event IS NOT NULL
    UNION ALL
    SELECT saga, n, event FROM saga_history)";

/// A parameter of [`Reader::rows`].
pub enum Param {
    Text(String),
    Int(i64),
}

pub fn worker(files: &Files, args: &[&str], failpoint: Option<&str>) -> Command {
    let mut command = Command::new(WORKER);
    command.arg(files.store_arg()).arg(&files.ledger).args(args);
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
    let sagas_stored = files.stored();
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
