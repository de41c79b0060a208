//! The SQLite store: durable, embedded, one file.
//!
//! Writes go to one writer thread, which takes every write queued at that moment and commits
//! them in one transaction (group commit): many concurrent sagas share each fsync, so durable
//! throughput grows with concurrency instead of being capped at one fsync per transition. Each
//! request is applied as if in its own savepoint, so one bad request fails alone. Every statement
//! the writer runs is prepared once. Reads use a second connection (WAL mode lets it read while
//! the writer writes).
//!
//! The schema carries a version (`PRAGMA user_version`); a database written by a newer version
//! of this library is refused before anything is written.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use super::handoff::{self, Waiting};
use super::{
    CompletedStep, CorruptRecord, Created, NewSaga, Progress, SagaRecord, SagaStore, StoreError,
    StoreFuture, StoredContext, Write,
};
use crate::event::SagaEvent;
use crate::{SagaId, SagaStatus};

/// The schema version this library writes.
pub const SCHEMA_VERSION: i64 = 2;

/// The most requests one transaction takes; bounds the latency of the first in a large batch.
const MAX_BATCH: usize = 4096;

/// The writer's page cache, in KiB (negative: SQLite reads `cache_size` below zero as KiB).
const WRITER_CACHE_KIB: i64 = -64 * 1024;

/// Log pages after which a commit checkpoints the log into the database.
const CHECKPOINT_PAGES: i64 = 10_000;

/// How much a commit survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// Every acknowledged transition survives a crash of the process and of the machine
    /// (`synchronous = FULL`). The default.
    #[default]
    Full,
    /// Survives a crash of the process; the last transitions may be lost on power loss, never
    /// corrupting the file (`synchronous = NORMAL`).
    Normal,
    /// No fsync at all (`synchronous = OFF`): for tests and throwaway data.
    Off,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
            Durability::Off => "OFF",
        }
    }
}

/// A durable store in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    requests: Mutex<mpsc::Sender<Request>>,
    waiting: Waiting,
    reader: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

enum Request {
    /// The saga, its "saga started" event and its first writes, encoded.
    Create(
        Box<NewSaga>,
        String,
        Vec<EncodedWrite>,
        oneshot::Sender<Result<Created, StoreError>>,
    ),
    Write(
        SagaId,
        Vec<EncodedWrite>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    BeginRecovery(SagaId, oneshot::Sender<Result<u32, StoreError>>),
}

/// A write with its JSON already encoded, on the caller's thread rather than the writer's.
struct EncodedWrite {
    event: String,
    at: i64,
    status: Option<(String, bool)>,
    context: Option<Vec<u8>>,
    progress: Option<Progress>,
    resets_recovery: bool,
}

/// Encodes `writes` for the writer thread, taking them out of the vector.
fn encode(writes: &mut Vec<Write>) -> Result<Vec<EncodedWrite>, StoreError> {
    writes
        .drain(..)
        .map(|w| {
            Ok(EncodedWrite {
                event: serde_json::to_string(&w.event).map_err(store_error)?,
                at: millis(w.event.at),
                status: w
                    .status
                    .as_ref()
                    .map(|s| serde_json::to_string(s).map(|json| (json, s.is_terminal())))
                    .transpose()
                    .map_err(store_error)?,
                context: w
                    .context
                    .as_ref()
                    .map(|c| c.to_json().map(|j| j.to_vec()))
                    .transpose()
                    .map_err(|e| StoreError::new(format!("the context does not serialize: {e}")))?,
                resets_recovery: w.is_progress(),
                progress: w.progress,
            })
        })
        .collect()
}

fn store_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::new(error.to_string())
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with full durability.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Full)
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        Self::options(path).durability(durability).open()
    }

    /// Options for opening the database at `path`, starting from the defaults: full
    /// durability, and a 30 s wait for another process's write lock.
    pub fn options(path: impl AsRef<Path>) -> SqliteOptions {
        SqliteOptions {
            path: path.as_ref().to_owned(),
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(30),
        }
    }

    fn open_options(options: SqliteOptions) -> Result<Self, StoreError> {
        let path = options.path.clone();
        let mut writer = connect(&options)?;
        migrate(&mut writer)?;
        // A group commit touches many pages (the row of every saga in the batch, and the id
        // index at a random place for ids callers chose): a page cache that holds the indexes
        // spares re-reading them, and checkpointing every
        // 40 MB of log instead of every 4 MB copies each page rewritten by successive commits
        // once instead of many times. Both only change speed.
        writer
            .pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(store_error)?;
        writer
            .pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)
            .map_err(store_error)?;
        let reader = connect(&options)?;
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("saga-sqlite-writer".into())
            .spawn(move || write_loop(writer, receiver))
            .map_err(store_error)?;
        Ok(SqliteStore {
            path,
            requests: Mutex::new(sender),
            waiting: Waiting::default(),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send<T: Send + 'static>(
        &self,
        request: Request,
        reply: oneshot::Receiver<Result<T, StoreError>>,
    ) -> StoreFuture<'_, T> {
        // Counted from before the request is sent until the future is done or dropped.
        let waiter = self.waiting.enter();
        let sent = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(request);
        Box::pin(async move {
            sent.map_err(|_| StoreError::new("the SQLite writer thread has stopped"))?;
            waiter
                .answer(reply)
                .await
                .ok_or_else(|| StoreError::new("the SQLite writer thread has stopped"))?
        })
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let reader = self.reader.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                f(&reader.lock().unwrap_or_else(|e| e.into_inner()))
            })
            .await
            .map_err(store_error)?
        })
    }
}

/// How to open a [`SqliteStore`]: `SqliteStore::options(path).busy_timeout(..).open()`.
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteOptions {
    path: PathBuf,
    durability: Durability,
    busy_timeout: Duration,
}

impl SqliteOptions {
    /// How much a commit survives (default [`Durability::Full`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long a write waits while another process holds the database's write lock before
    /// it fails with an error (default 30 s). The store itself never holds the lock between
    /// commits.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Opens (creating and migrating if needed) the database.
    pub fn open(self) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_options(self)
    }
}

fn connect(options: &SqliteOptions) -> Result<Connection, StoreError> {
    let conn = Connection::open(&options.path).map_err(store_error)?;
    // Before anything that writes (even switching to WAL rewrites the header).
    check_version(&conn)?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(store_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(store_error)?;
    conn.pragma_update(None, "synchronous", options.durability.pragma())
        .map_err(store_error)?;
    Ok(conn)
}

/// Refuses a database written by a newer version of this library; returns its version.
fn check_version(conn: &Connection) -> Result<i64, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(store_error)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::new(format!(
            "the database schema is version {version}, newer than this library's version \
             {SCHEMA_VERSION}; upgrade the library (nothing was written)"
        )));
    }
    Ok(version)
}

/// The current schema, created whole on a new database.
///
/// A saga's history lives in one b-tree keyed by `saga * 2^24 + n` (see [`history_key`]): the
/// saga's `seq`, which grows with each new saga, then the entry's position in its history. The
/// entries of one saga are together and those of a new saga go at the end, so a commit touches
/// one history page where a table plus an index on `(saga, n)` would touch two. `saga` and `n`
/// are kept as columns too, for people reading the file. Idempotency keys are indexed only where
/// there is one: a unique index would otherwise hold (and write) an entry for every saga.
const SCHEMA: &str = "
    CREATE TABLE sagas (
        seq               INTEGER PRIMARY KEY,
        id                TEXT NOT NULL UNIQUE,
        saga_type         TEXT NOT NULL,
        steps             TEXT NOT NULL,
        status            TEXT NOT NULL,
        terminal          INTEGER NOT NULL DEFAULT 0,
        context           BLOB NOT NULL,
        completed         TEXT NOT NULL DEFAULT '[]',
        rollback          TEXT,
        idempotency_key   TEXT,
        recovery_attempts INTEGER NOT NULL DEFAULT 0,
        events            INTEGER NOT NULL DEFAULT 0,
        deadline_at       INTEGER,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );
    CREATE INDEX sagas_unfinished ON sagas (id) WHERE terminal = 0;
    CREATE UNIQUE INDEX sagas_by_key ON sagas (idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE TABLE saga_history (
        key   INTEGER PRIMARY KEY,
        saga  INTEGER NOT NULL,
        n     INTEGER NOT NULL,
        event TEXT NOT NULL
    );";

/// Bits of a history key that hold the entry's position in its saga's history.
const HISTORY_POSITION_BITS: u32 = 24;

/// The history key of entry `n` of the saga whose `seq` is `saga`.
fn history_key(saga: i64, n: i64) -> i64 {
    (saga << HISTORY_POSITION_BITS) | n
}

/// Version 1 to 2: sagas get an explicit `seq` (their rowid until now, which `VACUUM` may
/// renumber) and a count of their history entries; history entries are keyed by saga and
/// position instead of a global counter plus an index on random saga ids.
const MIGRATE_1_TO_2: &str = "
    ALTER TABLE sagas RENAME TO sagas_v1;
    ALTER TABLE saga_history RENAME TO saga_history_v1;
    DROP INDEX sagas_unfinished;
    {SCHEMA}
    INSERT INTO sagas (seq, id, saga_type, steps, status, terminal, context, completed, rollback,
                       idempotency_key, recovery_attempts, events, created_at, updated_at)
        SELECT rowid, id, saga_type, steps, status, terminal, context, completed, rollback,
               idempotency_key, recovery_attempts,
               (SELECT count(*) FROM saga_history_v1 h WHERE h.saga_id = s.id),
               created_at, updated_at
        FROM sagas_v1 s;
    INSERT INTO saga_history (key, saga, n, event)
        SELECT (s.seq << {BITS}) | h.n, s.seq, h.n, h.event
        FROM (SELECT saga_id, event,
                     row_number() OVER (PARTITION BY saga_id ORDER BY seq) - 1 AS n
              FROM saga_history_v1) h
        JOIN sagas s ON s.id = h.saga_id;";

/// Creates the schema on a new database, or brings an older one up to this version, in one
/// transaction: a failure leaves the database as it was.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version = check_version(conn)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store_error)?;
    // Another process may have migrated it between the check and the lock.
    let version = check_version(&tx)?;
    match version {
        SCHEMA_VERSION => return Ok(()),
        0 => tx.execute_batch(SCHEMA).map_err(store_error)?,
        1 => {
            let sql = MIGRATE_1_TO_2
                .replace("{SCHEMA}", SCHEMA)
                .replace("{BITS}", &HISTORY_POSITION_BITS.to_string());
            tx.execute_batch(&sql).map_err(store_error)?;
            let count = |table: &str| -> Result<i64, StoreError> {
                tx.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get(0)
                })
                .map_err(store_error)
            };
            let (before, after) = (count("saga_history_v1")?, count("saga_history")?);
            if before != after {
                // Dropping a row is not a migration: the transaction rolls back.
                return Err(StoreError::new(format!(
                    "cannot migrate the database from schema version 1: {} of its {before} \
                     history entries belong to no saga (nothing was changed)",
                    before - after
                )));
            }
            tx.execute_batch("DROP TABLE saga_history_v1; DROP TABLE sagas_v1;")
                .map_err(store_error)?;
        }
        other => {
            return Err(StoreError::new(format!(
                "the database has schema version {other}, which this library never wrote"
            )))
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(store_error)?;
    tx.commit().map_err(store_error)
}

/// The writer thread: takes everything queued, applies it in one transaction, commits once,
/// then answers every request.
///
/// Each request is applied as if in its own savepoint, so that one bad request fails alone. As
/// requests almost never fail, the batch is first applied without savepoints (they cost a copy
/// of every page a request touches); only when a request fails is that attempt rolled back and
/// the batch applied again with one savepoint per request.
fn write_loop(conn: Connection, requests: mpsc::Receiver<Request>) {
    while let Some(first) = handoff::next_request(&requests) {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let (outcomes, commit) = apply_optimistically(&conn, &batch)
            .unwrap_or_else(|Failed| apply_isolated(&conn, &batch));
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            reply(request, outcome, commit.clone());
        }
    }
}

/// A request failed in a batch applied without savepoints; the transaction was rolled back.
struct Failed;

/// Each request's own result, and the commit's.
type Applied = (Vec<Result<Outcome, StoreError>>, Result<(), StoreError>);

/// Applies the batch in one transaction without savepoints and commits it, unless a request
/// fails: then nothing of it stays.
fn apply_optimistically(conn: &Connection, batch: &[Request]) -> Result<Applied, Failed> {
    if let Err(failed) = begin(conn, batch) {
        return Ok(failed);
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        match apply(conn, request) {
            Ok(outcome) => outcomes.push(Ok(outcome)),
            Err(_) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(Failed);
            }
        }
    }
    Ok(commit(conn, outcomes))
}

/// Applies the batch in one transaction, each request in its own savepoint, and commits it.
fn apply_isolated(conn: &Connection, batch: &[Request]) -> Applied {
    if let Err(failed) = begin(conn, batch) {
        return failed;
    }
    let outcomes = batch
        .iter()
        .map(|request| savepoint(conn, || apply(conn, request)))
        .collect();
    commit(conn, outcomes)
}

/// Begins the batch's transaction; when it cannot (another process held the lock too long,
/// say), that error is every request's answer.
fn begin(conn: &Connection, batch: &[Request]) -> Result<(), Applied> {
    run_cached(conn, "BEGIN IMMEDIATE").map_err(|error| {
        let error = StoreError::new(format!("could not begin a transaction: {error}"));
        let outcomes = batch.iter().map(|_| Err(error.clone())).collect();
        (outcomes, Err(error))
    })
}

/// Commits the batch; when the commit fails, its error is every request's answer and nothing
/// of the batch stays.
fn commit(conn: &Connection, outcomes: Vec<Result<Outcome, StoreError>>) -> Applied {
    let commit = run_cached(conn, "COMMIT");
    if commit.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    (outcomes, commit)
}

/// What applying one request gave, before the commit.
enum Outcome {
    Create(Created),
    Write,
    BeginRecovery(u32),
}

/// Runs `f` in a savepoint: a failure undoes what it did, and nothing else.
fn savepoint<T>(
    conn: &Connection,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run_cached(conn, "SAVEPOINT request")?;
    match f() {
        Ok(value) => {
            run_cached(conn, "RELEASE request")?;
            Ok(value)
        }
        Err(error) => {
            conn.execute_batch("ROLLBACK TO request; RELEASE request")
                .map_err(store_error)?;
            Err(error)
        }
    }
}

fn apply(conn: &Connection, request: &Request) -> Result<Outcome, StoreError> {
    match request {
        Request::Create(saga, started, writes, _) => {
            create(conn, saga, started, writes).map(Outcome::Create)
        }
        Request::Write(id, writes, _) => write(conn, *id, writes).map(|()| Outcome::Write),
        Request::BeginRecovery(id, _) => begin_recovery(conn, *id).map(Outcome::BeginRecovery),
    }
}

/// Sends a request its own result, or the commit's error. A requester that went away no longer
/// needs its answer.
fn reply(request: Request, outcome: Result<Outcome, StoreError>, commit: Result<(), StoreError>) {
    let outcome = commit.and(outcome);
    match request {
        Request::Create(_, _, _, tx) => drop(tx.send(outcome.map(|o| match o {
            Outcome::Create(created) => created,
            _ => unreachable!("a create's outcome"),
        }))),
        Request::Write(_, _, tx) => drop(tx.send(outcome.map(|_| ()))),
        Request::BeginRecovery(_, tx) => drop(tx.send(outcome.map(|o| match o {
            Outcome::BeginRecovery(attempts) => attempts,
            _ => unreachable!("a recovery's outcome"),
        }))),
    }
}

/// Runs a statement without parameters, prepared once per connection.
fn run_cached(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(store_error)
}

/// Runs a statement prepared once per connection (every statement the writer runs for a saga
/// is: parsing one costs more than running it); the rows it changed.
fn execute_cached(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map_err(store_error)
}

fn create(
    conn: &Connection,
    saga: &NewSaga,
    started: &str,
    writes: &[EncodedWrite],
) -> Result<Created, StoreError> {
    let id = saga.id.to_string();
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM sagas WHERE id = ?1 OR (?2 IS NOT NULL AND idempotency_key = ?2)",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![id, saga.idempotency_key], |row| row.get(0))
                .optional()
        })
        .map_err(store_error)?;
    if let Some(existing) = existing {
        let record = load_record(conn, &existing)?
            .ok_or_else(|| StoreError::new("saga vanished during create"))?
            .map_err(|corrupt| StoreError::new(corrupt.message))?;
        return Ok(Created::Existing(Box::new(record)));
    }
    let context = saga.context.to_json().map_err(store_error)?;
    let steps = serde_json::to_string(&saga.steps).map_err(store_error)?;
    let status = serde_json::to_string(&SagaStatus::<usize>::Pending).map_err(store_error)?;
    let now = millis(SystemTime::now());
    execute_cached(
        conn,
        "INSERT INTO sagas (id, saga_type, steps, status, context, idempotency_key, events,
                            deadline_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?8, ?7, ?7)",
        params![
            id,
            saga.saga_type,
            steps,
            status,
            &context[..],
            saga.idempotency_key,
            now,
            saga.deadline.map(millis)
        ],
    )?;
    insert_event(conn, (&id, conn.last_insert_rowid()), 0, started)?;
    write(conn, saga.id, writes)?;
    Ok(Created::New)
}

/// Writes entry `n` of the history of saga `id`, whose `seq` is `saga`.
fn insert_event(
    conn: &Connection,
    (id, saga): (&str, i64),
    n: i64,
    event: &str,
) -> Result<(), StoreError> {
    if n >> HISTORY_POSITION_BITS != 0 {
        return Err(StoreError::new(format!(
            "saga {id} has {n} history entries, the most one saga can keep"
        )));
    }
    execute_cached(
        conn,
        "INSERT INTO saga_history (key, saga, n, event) VALUES (?1, ?2, ?3, ?4)",
        params![history_key(saga, n), saga, n, event],
    )
    .map(drop)
}

/// Applies a request's transitions, in order: one lookup of the saga's row (its list of
/// completed steps, read only when a write changes it), one `UPDATE` of that row to what the
/// writes leave (a field none of them sets keeps its value) and one history insert per write.
fn write(conn: &Connection, id: SagaId, writes: &[EncodedWrite]) -> Result<(), StoreError> {
    let Some(last) = writes.last() else {
        return Ok(());
    };
    let id = id.to_string();
    let missing = || StoreError::new(format!("no saga with id {id}"));
    let reads_completed = writes.iter().any(|w| {
        matches!(
            w.progress,
            Some(Progress::Completed(_)) | Some(Progress::Compensated(_))
        )
    });
    // The last of each field the writes set is what the row ends with.
    let (status, terminal) = match writes.iter().rev().find_map(|w| w.status.as_ref()) {
        Some((status, terminal)) => (Some(status), Some(*terminal)),
        None => (None, None),
    };
    let context = writes.iter().rev().find_map(|w| w.context.as_ref());
    let resets_recovery = writes.iter().any(|w| w.resets_recovery);
    let (stored, seq, sets_terminal, events) = conn
        .prepare_cached("SELECT completed, seq, terminal, events FROM sagas WHERE id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([&id], |row| {
                    let stored = match reads_completed {
                        true => Some(row.get::<_, String>(0)?),
                        false => None,
                    };
                    // Setting `terminal` rewrites the saga's entry in the index of unfinished
                    // sagas even when the value stays the same, and most writes keep it.
                    let sets_terminal = terminal.is_some_and(|terminal| {
                        row.get_ref(2)
                            .map_or(true, |v| v != ValueRef::Integer(terminal.into()))
                    });
                    Ok((
                        stored,
                        row.get::<_, i64>(1)?,
                        sets_terminal,
                        row.get::<_, i64>(3)?,
                    ))
                })
                .optional()
        })
        .map_err(store_error)?
        .ok_or_else(missing)?;
    let completed = match stored {
        Some(stored) => {
            let mut steps: Vec<CompletedStep> =
                serde_json::from_str(&stored).map_err(store_error)?;
            for w in writes {
                super::apply_progress(&mut steps, w.progress.as_ref());
            }
            Some(serde_json::to_string(&steps).map_err(store_error)?)
        }
        None => None,
    };
    let rollback = writes.iter().rev().find_map(|w| match &w.progress {
        Some(Progress::RollbackStarted(cause)) => Some(cause),
        _ => None,
    });
    let rollback = rollback
        .map(serde_json::to_string)
        .transpose()
        .map_err(store_error)?;
    let changed = execute_cached(
        conn,
        if sets_terminal {
            "UPDATE sagas SET updated_at = ?2,
                 status = coalesce(?3, status),
                 recovery_attempts = CASE WHEN ?4 THEN 0 ELSE recovery_attempts END,
                 context = coalesce(?5, context),
                 completed = coalesce(?6, completed),
                 rollback = coalesce(?7, rollback),
                 events = ?9,
                 terminal = ?8
             WHERE seq = ?1"
        } else {
            // The row already has this `terminal` (or the write has none).
            "UPDATE sagas SET updated_at = ?2,
                 status = coalesce(?3, status),
                 recovery_attempts = CASE WHEN ?4 THEN 0 ELSE recovery_attempts END,
                 context = coalesce(?5, context),
                 completed = coalesce(?6, completed),
                 rollback = coalesce(?7, rollback),
                 events = ?9
             WHERE seq = ?1 AND (?8 IS NULL OR terminal = ?8)"
        },
        params![
            seq,
            last.at,
            status,
            resets_recovery,
            context,
            completed,
            rollback,
            terminal,
            events + writes.len() as i64
        ],
    )?;
    if changed == 0 {
        return Err(missing());
    }
    (events..)
        .zip(writes)
        .try_for_each(|(n, w)| insert_event(conn, (&id, seq), n, &w.event))
}

fn begin_recovery(conn: &Connection, id: SagaId) -> Result<u32, StoreError> {
    conn.prepare_cached(
        "UPDATE sagas SET recovery_attempts = recovery_attempts + 1 WHERE id = ?1
         RETURNING recovery_attempts",
    )
    .and_then(|mut statement| {
        statement
            .query_row([id.to_string()], |row| row.get(0))
            .optional()
    })
    .map_err(store_error)?
    .ok_or_else(|| StoreError::new(format!("no saga with id {id}")))
}

const RECORD_COLUMNS: &str = "id, saga_type, steps, status, context, completed, rollback, \
     idempotency_key, recovery_attempts, created_at, updated_at, deadline_at";

/// Reads one record; `Err(CorruptRecord)` when its stored fields do not decode.
fn load_record(
    conn: &Connection,
    id: &str,
) -> Result<Option<Result<SagaRecord, CorruptRecord>>, StoreError> {
    conn.query_row(
        &format!("SELECT {RECORD_COLUMNS} FROM sagas WHERE id = ?1"),
        [id],
        row_to_record,
    )
    .optional()
    .map_err(store_error)
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<SagaRecord, CorruptRecord>> {
    // Any column may hold anything: a value of the wrong type is a corrupt record, never an
    // error that would stop the reading of the others.
    let text = |i: usize| -> Result<String, String> {
        match row.get_ref(i).map_err(|e| e.to_string())? {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|e| e.to_string()),
            other => Err(format!(
                "column {i} holds {:?}, not text",
                other.data_type()
            )),
        }
    };
    let optional_text = |i: usize| -> Result<Option<String>, String> {
        match row.get_ref(i).map_err(|e| e.to_string())? {
            ValueRef::Null => Ok(None),
            _ => text(i).map(Some),
        }
    };
    let integer = |i: usize| -> Result<i64, String> {
        match row.get_ref(i).map_err(|e| e.to_string())? {
            ValueRef::Integer(n) => Ok(n),
            other => Err(format!(
                "column {i} holds {:?}, not an integer",
                other.data_type()
            )),
        }
    };
    let id = text(0).unwrap_or_else(|_| "?".to_owned());
    let saga_type = text(1).unwrap_or_else(|_| "?".to_owned());
    let decode = || -> Result<SagaRecord, String> {
        let time = |ms: i64| UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
        let context = match row.get_ref(4).map_err(|e| e.to_string())? {
            ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
            other => return Err(format!("the context holds {:?}", other.data_type())),
        };
        Ok(SagaRecord {
            id: id.parse().map_err(|e| format!("bad id: {e}"))?,
            saga_type: saga_type.clone(),
            steps: serde_json::from_str(&text(2)?).map_err(|e| format!("bad step list: {e}"))?,
            status: serde_json::from_str::<SagaStatus<usize>>(&text(3)?)
                .map_err(|e| format!("bad status: {e}"))?,
            context: StoredContext::json(context),
            completed: serde_json::from_str(&text(5)?)
                .map_err(|e| format!("bad completed steps: {e}"))?,
            rollback: optional_text(6)?
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(|e| format!("bad rollback cause: {e}"))?,
            idempotency_key: optional_text(7)?,
            recovery_attempts: u32::try_from(integer(8)?).map_err(|e| e.to_string())?,
            created_at: time(integer(9)?),
            updated_at: time(integer(10)?),
            deadline: match row.get_ref(11).map_err(|e| e.to_string())? {
                ValueRef::Null => None,
                _ => Some(time(integer(11)?)),
            },
        })
    };
    Ok(decode().map_err(|message| CorruptRecord {
        id: id.clone(),
        saga_type,
        message,
    }))
}

impl SagaStore for SqliteStore {
    fn create(&self, mut saga: NewSaga) -> StoreFuture<'_, Created> {
        let encoded = serde_json::to_string(&saga.started)
            .map_err(store_error)
            .and_then(|started| Ok((started, encode(&mut saga.writes)?)));
        let (started, writes) = match encoded {
            Ok(encoded) => encoded,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        };
        let (reply, receiver) = oneshot::channel();
        self.send(
            Request::Create(Box::new(saga), started, writes, reply),
            receiver,
        )
    }

    fn write<'a>(&'a self, id: SagaId, writes: &mut Vec<Write>) -> StoreFuture<'a, ()> {
        let encoded = match encode(writes) {
            Ok(encoded) => encoded,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        };
        let (reply, receiver) = oneshot::channel();
        self.send(Request::Write(id, encoded, reply), receiver)
    }

    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>> {
        self.read(move |conn| {
            load_record(conn, &id.to_string())?
                .transpose()
                .map_err(|corrupt| {
                    StoreError::new(format!("saga {}: {}", corrupt.id, corrupt.message))
                })
        })
    }

    fn history(&self, id: SagaId) -> StoreFuture<'_, Option<Vec<SagaEvent>>> {
        self.read(move |conn| {
            let id = id.to_string();
            let seq: Option<i64> = conn
                .query_row("SELECT seq FROM sagas WHERE id = ?1", [&id], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(store_error)?;
            let Some(seq) = seq else {
                return Ok(None);
            };
            let mut statement = conn
                .prepare_cached(
                    "SELECT event FROM saga_history WHERE key BETWEEN ?1 AND ?2 ORDER BY key",
                )
                .map_err(store_error)?;
            let (first, last) = (history_key(seq, 0), history_key(seq + 1, 0) - 1);
            let rows = statement
                .query_map([first, last], |row| row.get::<_, String>(0))
                .map_err(store_error)?;
            let mut events = Vec::new();
            for row in rows {
                let json = row.map_err(store_error)?;
                events.push(serde_json::from_str(&json).map_err(|e| {
                    StoreError::new(format!("saga {id}: unreadable history entry: {e}"))
                })?);
            }
            Ok(Some(events))
        })
    }

    fn unfinished(
        &self,
        after: Option<SagaId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Result<SagaRecord, CorruptRecord>>> {
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM sagas WHERE terminal = 0 AND id > ?1 ORDER BY id LIMIT ?2"
                ))
                .map_err(store_error)?;
            let after = after.map(|id| id.to_string()).unwrap_or_default();
            let rows = statement
                .query_map(params![after, limit as i64], row_to_record)
                .map_err(store_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(store_error)
        })
    }

    fn begin_recovery(&self, id: SagaId) -> StoreFuture<'_, u32> {
        let (reply, receiver) = oneshot::channel();
        self.send(Request::BeginRecovery(id, reply), receiver)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::*;
    use crate::event::SagaEventKind;

    fn event(id: SagaId, kind: SagaEventKind) -> SagaEvent {
        SagaEvent {
            saga_id: id,
            saga_type: Cow::Borrowed("OrderSaga"),
            at: SystemTime::now(),
            kind,
        }
    }

    fn intent(id: SagaId) -> Write {
        Write {
            event: event(
                id,
                SagaEventKind::StepStarted {
                    step: "reserve".into(),
                    phase: crate::step::Phase::Action,
                    attempt: 1,
                },
            ),
            status: Some(SagaStatus::Running { step: 0 }),
            context: None,
            progress: None,
        }
    }

    fn new_saga(id: SagaId, writes: Vec<Write>) -> NewSaga {
        NewSaga {
            id,
            saga_type: "OrderSaga",
            steps: vec!["reserve", "charge"],
            context: StoredContext::live(Arc::new(7u32)),
            idempotency_key: None,
            deadline: None,
            started: event(id, SagaEventKind::SagaStarted { steps: Vec::new() }),
            writes,
        }
    }

    #[tokio::test]
    async fn a_saga_is_created_with_its_first_writes_and_its_history_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let id = SagaId::new();
        let created = store.create(new_saga(id, vec![intent(id)])).await.unwrap();
        assert!(matches!(created, Created::New));
        let record = store.load(id).await.unwrap().unwrap();
        assert_eq!(record.status, SagaStatus::Running { step: 0 });
        store.write(id, &mut vec![intent(id)]).await.unwrap();
        let history = store.history(id).await.unwrap().unwrap();
        let kinds: Vec<bool> = history
            .iter()
            .map(|e| matches!(e.kind, SagaEventKind::SagaStarted { .. }))
            .collect();
        assert_eq!(kinds, [true, false, false]);
    }

    #[tokio::test]
    async fn a_request_of_several_transitions_leaves_the_row_as_applying_them_in_order_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).unwrap();
        let id = SagaId::new();
        store.create(new_saga(id, vec![intent(id)])).await.unwrap();
        let done = CompletedStep {
            step: 0,
            via_fallback: false,
            compensated: false,
            timed_out: false,
        };
        let completed = Write {
            event: event(
                id,
                SagaEventKind::StepCompleted {
                    step: "reserve".into(),
                    attempt: 1,
                    duration: Duration::ZERO,
                },
            ),
            status: Some(SagaStatus::Running { step: 1 }),
            context: Some(StoredContext::live(Arc::new(8u32))),
            progress: Some(Progress::Completed(done)),
        };
        let mut next = intent(id);
        next.status = None;
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE sagas SET recovery_attempts = 3", [])
            .unwrap();
        store.write(id, &mut vec![completed, next]).await.unwrap();
        let record = store.load(id).await.unwrap().unwrap();
        assert_eq!(
            record.status,
            SagaStatus::Running { step: 1 },
            "set by the first"
        );
        assert_eq!(
            record.context.decode::<u32>().unwrap(),
            8,
            "set by the first"
        );
        assert_eq!(record.completed, [done]);
        assert_eq!(record.recovery_attempts, 0, "the completion was progress");
        assert_eq!(store.history(id).await.unwrap().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_bad_request_fails_alone_and_the_others_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let (a, b, missing) = (SagaId::new(), SagaId::new(), SagaId::new());
        store.create(new_saga(a, Vec::new())).await.unwrap();
        store.create(new_saga(b, Vec::new())).await.unwrap();
        // Queued before any is awaited, so that the writer usually takes them as one batch.
        let writes = [a, missing, b].map(|id| store.write(id, &mut vec![intent(id)]));
        let [first, bad, last]: [_; 3] = futures_util::future::join_all(writes)
            .await
            .try_into()
            .unwrap();
        assert!(first.is_ok() && last.is_ok(), "{first:?} {last:?}");
        assert_eq!(
            bad.unwrap_err().to_string(),
            format!("no saga with id {missing}")
        );
        for id in [a, b] {
            assert_eq!(store.history(id).await.unwrap().unwrap().len(), 2);
        }
        assert!(store.load(missing).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_database_locked_too_long_is_a_clear_error_and_the_store_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::options(&path)
            .busy_timeout(Duration::from_millis(50))
            .open()
            .unwrap();
        let id = SagaId::new();
        store.create(new_saga(id, Vec::new())).await.unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let error = store.write(id, &mut vec![intent(id)]).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "could not begin a transaction: database is locked"
        );
        other.execute_batch("ROLLBACK").unwrap();
        store.write(id, &mut vec![intent(id)]).await.unwrap();
        let history = store.history(id).await.unwrap().unwrap();
        assert_eq!(history.len(), 2, "the refused write left nothing");
    }

    #[tokio::test]
    async fn a_full_history_is_a_clear_error_and_the_write_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).unwrap();
        let id = SagaId::new();
        store.create(new_saga(id, Vec::new())).await.unwrap();
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE sagas SET events = ?1 WHERE id = ?2",
                params![1i64 << HISTORY_POSITION_BITS, id.to_string()],
            )
            .unwrap();
        let error = store.write(id, &mut vec![intent(id)]).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("saga {id} has 16777216 history entries, the most one saga can keep")
        );
        let record = store.load(id).await.unwrap().unwrap();
        assert_eq!(record.status, SagaStatus::Pending, "the write was undone");
    }
}
