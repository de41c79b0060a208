//! The SQLite schema: its version, creation, and migrations from older versions.
//!
//! The version is `PRAGMA user_version`; a database written by a newer version of this library,
//! or with a version this library never wrote, is refused before anything is written.

use rusqlite::{params, Connection, TransactionBehavior};

use super::codec::{store_error, unreadable};
use crate::machine::{Activity, SagaState};
use crate::outcome::RollbackCause;
use crate::step::Phase;
use crate::store::{CompletedStep, StoreError, StoreErrorKind};
use crate::SagaStatus;

/// The schema version this library writes.
pub const SCHEMA_VERSION: i64 = 8;

/// The oldest schema version a read-only store reads (what it lacks reads as empty).
pub(super) const READABLE_FROM: i64 = 4;

/// Refuses a database written by a newer version of this library; returns its version.
pub(super) fn check_version(conn: &Connection) -> Result<i64, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(store_error)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "the database schema is version {version}, newer than this library's version \
                 {SCHEMA_VERSION}; upgrade the library (nothing was written)"
            ),
        ));
    }
    if version < 0 {
        return Err(never_wrote(version));
    }
    Ok(version)
}

fn never_wrote(version: i64) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!(
            "the database has schema version {version}, which this library never wrote \
             (nothing was written)"
        ),
    )
}

/// A table's name and the columns this library needs in it.
type Table = (&'static str, &'static [&'static str]);

/// The columns of the `sagas` table since version 4.
const SAGAS_V4: &[&str] = &[
    "seq",
    "id",
    "saga_type",
    "steps",
    "status",
    "terminal",
    "state",
    "context",
    "idempotency_key",
    "events",
    "token",
    "owner",
    "lease_until",
    "wake_at",
    "cancel_requested",
    "created_at",
    "updated_at",
];

/// The tables of each schema version this library wrote, and the columns it needs in each.
const TABLES: &[(i64, &[Table])] = &[
    (
        1,
        &[
            (
                "sagas",
                &[
                    "id",
                    "saga_type",
                    "steps",
                    "status",
                    "terminal",
                    "context",
                    "completed",
                    "rollback",
                    "idempotency_key",
                    "recovery_attempts",
                    "created_at",
                    "updated_at",
                ],
            ),
            ("saga_history", &["seq", "saga_id", "event"]),
        ],
    ),
    (
        2,
        &[
            (
                "sagas",
                &[
                    "seq",
                    "id",
                    "saga_type",
                    "steps",
                    "status",
                    "terminal",
                    "context",
                    "completed",
                    "rollback",
                    "idempotency_key",
                    "recovery_attempts",
                    "events",
                    "deadline_at",
                    "created_at",
                    "updated_at",
                ],
            ),
            ("saga_history", &["key", "saga", "n", "event"]),
        ],
    ),
    (
        3,
        &[
            (
                "sagas",
                &[
                    "seq",
                    "id",
                    "saga_type",
                    "steps",
                    "status",
                    "terminal",
                    "state",
                    "context",
                    "idempotency_key",
                    "events",
                    "token",
                    "owner",
                    "lease_until",
                    "wake_at",
                    "created_at",
                    "updated_at",
                ],
            ),
            ("saga_history", &["key", "saga", "n", "event"]),
        ],
    ),
    (
        4,
        &[
            ("sagas", SAGAS_V4),
            ("saga_history", &["key", "saga", "n", "event"]),
        ],
    ),
    (5, TABLES_V5),
    // Version 6 added an index, not a table.
    (6, TABLES_V5),
    (7, TABLES_V7),
    // Version 8 added the short form of history entries, not a table.
    (8, TABLES_V7),
];

/// The tables since version 7.
const TABLES_V7: &[Table] = &[
    ("sagas", SAGAS_V4),
    // And the newest history entries, since version 7.
    ("sagas", &["history", "history_from"]),
    ("saga_history", &["key", "saga", "n", "event"]),
    (
        "saga_types",
        &["name", "fingerprint", "shape", "recorded_at"],
    ),
];

/// The tables since version 5.
const TABLES_V5: &[Table] = &[
    ("sagas", SAGAS_V4),
    ("saga_history", &["key", "saga", "n", "event"]),
    (
        "saga_types",
        &["name", "fingerprint", "shape", "recorded_at"],
    ),
];

/// Checks, before anything is written, that the database is a saga store this library can open:
/// a SQLite file, of a schema version it wrote (or empty), whose tables are that version's (no
/// other program's tables, no `sagas` table that is not ours). Returns its version.
pub(super) fn inspect(conn: &Connection) -> Result<i64, StoreError> {
    // One snapshot for the version and the tables: another process may be creating the schema.
    conn.execute_batch("BEGIN").map_err(store_error)?;
    let inspected = inspect_snapshot(conn);
    let ended = conn.execute_batch("COMMIT").map_err(store_error);
    let version = inspected?;
    ended?;
    Ok(version)
}

fn inspect_snapshot(conn: &Connection) -> Result<i64, StoreError> {
    let version = check_version(conn)?;
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             ORDER BY name",
        )
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(store_error)?;
    let not_ours = |why: String| {
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!("it is not a saga store: {why} (nothing was written)"),
        )
    };
    let Some((_, expected)) = TABLES.iter().find(|(v, _)| *v == version) else {
        return match tables.is_empty() {
            true => Ok(version),
            false => Err(not_ours(format!(
                "it holds other tables ({}) and no saga schema",
                tables.join(", ")
            ))),
        };
    };
    let others: Vec<&str> = tables
        .iter()
        .map(String::as_str)
        .filter(|t| !expected.iter().any(|(name, _)| name == t))
        .collect();
    if !others.is_empty() {
        return Err(not_ours(format!(
            "it holds other tables ({})",
            others.join(", ")
        )));
    }
    for (table, columns) in expected.iter() {
        let present: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(store_error)?;
        let missing: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|c| !present.iter().any(|p| p == c))
            .collect();
        if !missing.is_empty() {
            return Err(not_ours(format!(
                "its schema version is {version}, but its table `{table}` lacks {}",
                missing.join(", ")
            )));
        }
    }
    Ok(version)
}

/// Sagas by wake time, for the next durable timer (since version 4).
macro_rules! waking_index {
    () => {
        "CREATE INDEX sagas_waking ON sagas (wake_at) WHERE terminal = 0 AND wake_at IS NOT NULL;"
    };
}

/// The shapes of the saga types started on the store, for tools (since version 5).
macro_rules! types_table {
    () => {
        "CREATE TABLE saga_types (
            name        TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            shape       TEXT NOT NULL,
            recorded_at INTEGER NOT NULL,
            PRIMARY KEY (name, fingerprint)
        );"
    };
}

/// Ended sagas by status and type (since version 6), for the query side: a listing by status
/// and the counts read it instead of every row. Sagas still running are found through
/// `sagas_unfinished`; an in-flight saga's writes never touch this index, only its last one.
/// Queries must spell the expression exactly so for SQLite to use it.
macro_rules! ended_index {
    () => {
        "CREATE INDEX sagas_ended ON sagas (json_extract(status, '$.status'), saga_type, id)
            WHERE terminal = 1;"
    };
}

/// The indexes and the history table, the same since version 2.
macro_rules! indexes_and_history {
    () => {
        "
        CREATE INDEX sagas_unfinished ON sagas (id) WHERE terminal = 0;
        CREATE UNIQUE INDEX sagas_by_key ON sagas (idempotency_key)
            WHERE idempotency_key IS NOT NULL;
        CREATE TABLE saga_history (
            key   INTEGER PRIMARY KEY,
            saga  INTEGER NOT NULL,
            n     INTEGER NOT NULL,
            event TEXT NOT NULL
        );"
    };
}

/// The current schema, created whole on a new database.
///
/// A saga's row holds its state (the fold of its writes, as JSON), its context, its lease
/// (`owner`, `token`, `lease_until`) and, for queries, its status and whether it is terminal.
/// `events` is the number of its history entries: its version.
///
/// Its newest history entries are in the row too (since version 7): `history` holds entries
/// `history_from..events`, each followed by a newline (an encoded entry has none), appended by
/// the one `UPDATE` each write makes anyway, so that a write changes one page where a row per
/// entry changed two, and a commit of many sagas' writes does not scatter over the history's
/// pages. Every [`ROW_HISTORY_ENTRIES`] they move to `saga_history`, one b-tree keyed by
/// `saga * 2^24 + n` (see [`history_key`]): the saga's `seq`, then the entry's position, so
/// that one saga's older entries are together. Idempotency keys are indexed only where there is
/// one.
pub(super) const SCHEMA: &str = concat!(
    "CREATE TABLE sagas (
        seq               INTEGER PRIMARY KEY,
        id                TEXT NOT NULL UNIQUE,
        saga_type         TEXT NOT NULL,
        steps             TEXT NOT NULL,
        status            TEXT NOT NULL,
        terminal          INTEGER NOT NULL DEFAULT 0,
        state             TEXT NOT NULL,
        context           BLOB NOT NULL,
        idempotency_key   TEXT,
        events            INTEGER NOT NULL DEFAULT 0,
        token             INTEGER NOT NULL DEFAULT 0,
        owner             TEXT,
        lease_until       INTEGER,
        wake_at           INTEGER,
        cancel_requested  INTEGER NOT NULL DEFAULT 0,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL,
        history           TEXT NOT NULL DEFAULT '',
        history_from      INTEGER NOT NULL DEFAULT 0
    );",
    indexes_and_history!(),
    waking_index!(),
    types_table!(),
    ended_index!()
);

/// Version 3 to 4: operators' cancellations are marked on the saga, and sagas are indexed by
/// wake time (durable timers).
const MIGRATE_3_TO_4: &str =
    "ALTER TABLE sagas ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;";

/// Version 6 to 7: the newest history entries in the saga's row; every entry written so far is in
/// `saga_history`.
const MIGRATE_6_TO_7: &str = "ALTER TABLE sagas ADD COLUMN history TEXT NOT NULL DEFAULT '';
    ALTER TABLE sagas ADD COLUMN history_from INTEGER NOT NULL DEFAULT 0;
    UPDATE sagas SET history_from = events;";

/// How many history entries a saga's row gathers before they move to `saga_history`: a write
/// that takes the saga's count of entries to or past a multiple of this moves the row's entries
/// out (so a row holds fewer than this plus one write's). Known from the versions alone, the
/// writer needs no read to tell; a straight saga of up to 6 steps (2 entries a step, 2 more: 14)
/// keeps its whole history in its row. Rows stay about a page (SQLite keeps about 4 KB of a
/// row in its b-tree page before it spills to overflow pages), and the append, which rewrites
/// the row, stays cheap.
pub(super) const ROW_HISTORY_ENTRIES: i64 = 16;

/// Bits of a history key that hold the entry's position in its saga's history.
pub(super) const HISTORY_POSITION_BITS: u32 = 24;

/// The history key of entry `n` of the saga whose `seq` is `saga`.
pub(super) fn history_key(saga: i64, n: i64) -> i64 {
    (saga << HISTORY_POSITION_BITS) | n
}

/// Version 1 to 2: sagas get an explicit `seq` (their rowid until now, which `VACUUM` may
/// renumber) and a count of their history entries; history entries are keyed by saga and
/// position instead of a global counter plus an index on random saga ids.
const MIGRATE_1_TO_2: &str = concat!(
    "ALTER TABLE sagas RENAME TO sagas_v1;
    ALTER TABLE saga_history RENAME TO saga_history_v1;
    DROP INDEX sagas_unfinished;
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
    );",
    indexes_and_history!(),
    "
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
        JOIN sagas s ON s.id = h.saga_id;"
);

/// Version 2 to 3, first part: the lease columns and the state; the state is then filled in from
/// the version 2 columns (see [`migrate_2_to_3`]), which are dropped.
const MIGRATE_2_TO_3: &str = "
    ALTER TABLE sagas ADD COLUMN state TEXT NOT NULL DEFAULT '';
    ALTER TABLE sagas ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sagas ADD COLUMN owner TEXT;
    ALTER TABLE sagas ADD COLUMN lease_until INTEGER;
    ALTER TABLE sagas ADD COLUMN wake_at INTEGER;";

/// Creates the schema on a new database, or brings an older one up to this version, in one
/// transaction: a failure leaves the database as it was.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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
        // Each version's migration, from the database's up to this one.
        1..SCHEMA_VERSION => {
            let steps: [Migration; 7] = [
                migrate_1_to_2,
                migrate_2_to_3,
                migrate_3_to_4,
                migrate_4_to_5,
                migrate_5_to_6,
                migrate_6_to_7,
                migrate_7_to_8,
            ];
            for step in &steps[(version - 1) as usize..] {
                step(&tx)?;
            }
        }
        other => return Err(never_wrote(other)),
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(store_error)?;
    tx.commit().map_err(store_error)
}

fn migrate_3_to_4(tx: &Connection) -> Result<(), StoreError> {
    tx.execute_batch(MIGRATE_3_TO_4).map_err(store_error)?;
    tx.execute_batch(waking_index!()).map_err(store_error)
}

/// Version 4 to 5: the saga types' shapes.
fn migrate_4_to_5(tx: &Connection) -> Result<(), StoreError> {
    tx.execute_batch(types_table!()).map_err(store_error)
}

/// One version's migration to the next, in the migrating transaction.
type Migration = fn(&Connection) -> Result<(), StoreError>;

/// Version 5 to 6: ended sagas indexed by status and type.
fn migrate_5_to_6(tx: &Connection) -> Result<(), StoreError> {
    tx.execute_batch(ended_index!()).map_err(store_error)
}

/// Version 6 to 7: the newest history entries kept in the saga's row.
fn migrate_6_to_7(tx: &Connection) -> Result<(), StoreError> {
    tx.execute_batch(MIGRATE_6_TO_7).map_err(store_error)
}

/// Version 7 to 8: new history entries may take the short form (see `encoding::short`), which
/// a library that wrote version 7 cannot read, so the version changes; the entries already
/// written keep theirs, which reads as before.
fn migrate_7_to_8(_: &Connection) -> Result<(), StoreError> {
    Ok(())
}

fn migrate_1_to_2(tx: &Connection) -> Result<(), StoreError> {
    let sql = MIGRATE_1_TO_2.replace("{BITS}", &HISTORY_POSITION_BITS.to_string());
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
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "cannot migrate the database from schema version 1: {} of its {before} \
                 history entries belong to no saga (nothing was changed)",
                before - after
            ),
        ));
    }
    tx.execute_batch("DROP TABLE saga_history_v1; DROP TABLE sagas_v1;")
        .map_err(store_error)
}

/// A version 2 saga's columns that its state is made of: seq, status, completed, rollback,
/// recovery attempts, deadline.
type V2Row = (i64, String, String, Option<String>, i64, Option<i64>);

/// Fills in each saga's state from its version 2 columns, then drops them.
fn migrate_2_to_3(tx: &Connection) -> Result<(), StoreError> {
    tx.execute_batch(MIGRATE_2_TO_3).map_err(store_error)?;
    let rows: Vec<V2Row> = {
        let mut statement = tx
            .prepare(
                "SELECT seq, status, completed, rollback, recovery_attempts, deadline_at
                 FROM sagas",
            )
            .map_err(store_error)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })
            .map_err(store_error)?;
        rows.collect::<Result<_, _>>().map_err(store_error)?
    };
    for (seq, status, completed, rollback, recovery_attempts, deadline_at) in rows {
        let decode = || -> Result<SagaState, String> {
            let status: SagaStatus<usize> =
                serde_json::from_str(&status).map_err(|e| format!("bad status: {e}"))?;
            let completed: Vec<CompletedStep> =
                serde_json::from_str(&completed).map_err(|e| format!("bad completed: {e}"))?;
            let rollback: Option<RollbackCause<usize>> = rollback
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(|e| format!("bad rollback: {e}"))?;
            Ok(state_from_v2(
                status,
                completed,
                rollback,
                recovery_attempts,
                deadline_at,
            ))
        };
        let state = decode()
            .map_err(|message| unreadable(format!("cannot migrate saga #{seq}: {message}")))?;
        tx.execute(
            "UPDATE sagas SET state = ?2 WHERE seq = ?1",
            params![seq, serde_json::to_string(&state).map_err(store_error)?],
        )
        .map_err(store_error)?;
    }
    tx.execute_batch(
        "ALTER TABLE sagas DROP COLUMN completed;
         ALTER TABLE sagas DROP COLUMN rollback;
         ALTER TABLE sagas DROP COLUMN recovery_attempts;
         ALTER TABLE sagas DROP COLUMN deadline_at;",
    )
    .map_err(store_error)
}

/// A version 2 saga's state. Version 2 kept a cursor, not activities: a saga running a step that
/// had not completed was running (or about to run) that step's action, which is now an attempt
/// in flight, so that it runs again before anything else, as version 2 did.
fn state_from_v2(
    status: SagaStatus<usize>,
    completed: Vec<CompletedStep>,
    rollback: Option<RollbackCause<usize>>,
    recovery_attempts: i64,
    deadline_at: Option<i64>,
) -> SagaState {
    let deadline = deadline_at
        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64));
    let mut state = SagaState::new(deadline);
    if let SagaStatus::Running { step } = status {
        if rollback.is_none() && !completed.iter().any(|d| d.step == step && !d.timed_out) {
            let mut activity = Activity::new(step, Phase::Action, false);
            activity.attempt = 1;
            activity.in_flight = true;
            state.active.push(activity);
        }
    }
    state.status = status;
    state.completed = completed;
    state.rollback = rollback.map(Box::new);
    state.recovery_attempts = u32::try_from(recovery_attempts).unwrap_or(0);
    state
}
