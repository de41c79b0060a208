//! The writer thread: takes every request queued at that moment, applies them in one
//! transaction, commits once (group commit), then answers every request.
//!
//! Each request is applied as if in its own savepoint, so that one bad (or refused) request fails
//! alone. As requests almost never fail, the batch is first applied without savepoints (they
//! cost a copy of every page a request touches); only when a request fails is that attempt
//! rolled back and the batch applied again with one savepoint per request. Every statement the
//! writer runs is prepared once.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, PrepFlags, Statement};
use tokio::sync::oneshot;

use super::codec::{millis, store_error, Creating, Encoded, Folded};
use super::rows::{self, Seqs};
use crate::store::handoff::Queue;
use crate::store::{
    Acquire, CorruptRecord, Created, Fence, Held, LeaseRequest, SagaRecord, StoreError,
    StoreErrorKind,
};
use crate::{OperatorRequest, Refusal, SagaId};

/// The most requests one transaction takes; bounds the latency of the first in a large batch.
const MAX_BATCH: usize = 4096;

/// One request to the writer, with where its answer goes.
pub(super) enum Request {
    /// The saga, with its first writes (after its "saga started" event) and its row, encoded
    /// and folded by the caller.
    Create(Box<Creating>, Reply<Created>),
    /// The writes, and what they leave the row with when the caller folded them already.
    Write(SagaId, Fence, Encoded, Option<Box<Folded>>, Reply<u64>),
    Acquire(Box<Acquire>, Reply<Vec<Result<SagaRecord, CorruptRecord>>>),
    Renew(String, Vec<SagaId>, Duration, Reply<Vec<Held>>),
    Release(SagaId, Fence, Option<SystemTime>, Reply<()>),
    Operator(
        SagaId,
        OperatorRequest,
        Option<LeaseRequest>,
        Reply<Result<SagaRecord, Refusal>>,
    ),
    /// A saga type's name, its shape's fingerprint and its shape as JSON.
    RecordType(String, String, String, Reply<()>),
}

/// Where a request's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Answer<T>>;

/// A request's answer, with what the request carried, so that the caller's thread frees it: the
/// callers allocated it, and glibc makes a thread that frees another's memory queue behind
/// that thread's allocations (a fifth of the writer's time with a thousand sagas at once).
pub(super) struct Answer<T> {
    pub(super) result: Result<T, StoreError>,
    pub(super) spent: Spent,
}

/// What a saga's request carried, handed back with its answer.
// Held only to be dropped where it was made.
#[allow(dead_code)]
pub(super) enum Spent {
    Nothing,
    Create(Box<Creating>),
    Write(Encoded, Option<Box<Folded>>),
}

/// What applying one request gave, before the commit.
enum Outcome {
    Create(Created),
    Write(u64),
    Acquire(Vec<Result<SagaRecord, CorruptRecord>>),
    Renew(Vec<Held>),
    Release,
    Operator(Box<Result<SagaRecord, Refusal>>),
    RecordType,
}

/// The writer's connection, with the statements every batch runs prepared once for the
/// writer's life: rusqlite's statement cache hashes a statement's text twice per execution (and
/// compares it), about 2,000 instructions, a tenth of what the writer does for a saga.
pub(super) struct Prepared<'c> {
    pub(super) conn: &'c Connection,
    begin: RefCell<Statement<'c>>,
    commit: RefCell<Statement<'c>>,
    pub(super) insert: RefCell<Statement<'c>>,
    pub(super) update: RefCell<Statement<'c>>,
    pub(super) update_ending: RefCell<Statement<'c>>,
}

impl<'c> Prepared<'c> {
    fn new(conn: &'c Connection) -> Result<Self, StoreError> {
        // Persistent, as rusqlite's cache prepares them: a statement prepared otherwise keeps
        // SQLite's small per-connection pool of memory (lookaside) to itself, and every run of
        // every statement then allocates from the heap (cost more than the cache saved).
        let prepare = |sql| {
            conn.prepare_with_flags(sql, PrepFlags::SQLITE_PREPARE_PERSISTENT)
                .map(RefCell::new)
                .map_err(store_error)
        };
        Ok(Prepared {
            conn,
            begin: prepare("BEGIN IMMEDIATE")?,
            commit: prepare("COMMIT")?,
            insert: prepare(rows::INSERT)?,
            update: prepare(rows::UPDATE)?,
            update_ending: prepare(rows::UPDATE_ENDING)?,
        })
    }

    /// Runs one of the statements; the rows it changed.
    pub(super) fn run(
        statement: &RefCell<Statement<'_>>,
        params: impl rusqlite::Params,
    ) -> Result<usize, StoreError> {
        statement.borrow_mut().execute(params).map_err(store_error)
    }
}

/// The writer thread's loop; ends once the queue is closed and empty.
pub(super) fn write_loop(conn: Connection, requests: Arc<Queue<Request>>) {
    let mut seqs = Seqs::default();
    // Kept from batch to batch (and swapped with the queue's): no batch grows a vector.
    let mut batch = Vec::new();
    let db = match Prepared::new(&conn) {
        Ok(db) => db,
        Err(error) => {
            // The schema was checked when the store opened: this is the file going bad under
            // it. Every request gets the error.
            while requests.take(&mut batch, MAX_BATCH) {
                for request in batch.drain(..) {
                    reply(request, Err(error.clone()), Ok(()));
                }
            }
            return;
        }
    };
    while requests.take(&mut batch, MAX_BATCH) {
        let (outcomes, commit) = apply_optimistically(&db, &mut seqs, &batch)
            .unwrap_or_else(|Failed| apply_isolated(&db, &mut seqs, &batch));
        if commit.is_err() {
            // Rows it inserted are gone, and their `seq`s may be given to others.
            seqs.clear();
        }
        for (request, outcome) in batch.drain(..).zip(outcomes) {
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
fn apply_optimistically(
    db: &Prepared<'_>,
    seqs: &mut Seqs,
    batch: &[Request],
) -> Result<Applied, Failed> {
    if let Err(failed) = begin(db, batch) {
        return Ok(failed);
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        match apply(db, seqs, request) {
            Ok(outcome) => outcomes.push(Ok(outcome)),
            Err(_) => {
                let _ = db.conn.execute_batch("ROLLBACK");
                seqs.clear();
                return Err(Failed);
            }
        }
    }
    Ok(commit(db, outcomes))
}

/// Applies the batch in one transaction, each request in its own savepoint, and commits it.
fn apply_isolated(db: &Prepared<'_>, seqs: &mut Seqs, batch: &[Request]) -> Applied {
    if let Err(failed) = begin(db, batch) {
        return failed;
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        let outcome = savepoint(db.conn, || apply(db, seqs, request));
        if outcome.is_err() {
            // What the request inserted was rolled back.
            seqs.clear();
        }
        outcomes.push(outcome);
    }
    commit(db, outcomes)
}

/// Begins the batch's transaction; when it cannot (another process held the lock too long,
/// say), that error is every request's answer.
fn begin(db: &Prepared<'_>, batch: &[Request]) -> Result<(), Applied> {
    Prepared::run(&db.begin, []).map(drop).map_err(|error| {
        let error = StoreError::new(
            error.kind(),
            format!("could not begin a transaction: {error}"),
        );
        let outcomes = batch.iter().map(|_| Err(error.clone())).collect();
        (outcomes, Err(error))
    })
}

/// Commits the batch; when the commit fails, its error is every request's answer and nothing
/// of the batch stays.
fn commit(db: &Prepared<'_>, outcomes: Vec<Result<Outcome, StoreError>>) -> Applied {
    let commit = Prepared::run(&db.commit, []).map(drop);
    if commit.is_err() && !db.conn.is_autocommit() {
        let _ = db.conn.execute_batch("ROLLBACK");
    }
    (outcomes, commit)
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

fn apply(db: &Prepared<'_>, seqs: &mut Seqs, request: &Request) -> Result<Outcome, StoreError> {
    let conn = db.conn;
    match request {
        Request::Create(creating, _) => rows::create(db, seqs, creating).map(Outcome::Create),
        Request::Write(id, fence, encoded, folded, _) => {
            let folded = folded.as_deref();
            rows::write(db, seqs, *id, Some(*fence), encoded, folded).map(Outcome::Write)
        }
        Request::Acquire(request, _) => acquire(conn, request).map(Outcome::Acquire),
        Request::Renew(owner, ids, duration, _) => {
            renew(conn, owner, ids, *duration).map(Outcome::Renew)
        }
        Request::Release(id, fence, wake_at, _) => {
            rows::release(conn, *id, *fence, *wake_at).map(|()| Outcome::Release)
        }
        Request::Operator(id, request, lease, _) => {
            rows::operator(db, *id, *request, lease.as_ref())
                .map(|answer| Outcome::Operator(Box::new(answer)))
        }
        Request::RecordType(name, fingerprint, shape, _) => execute_cached(
            conn,
            "INSERT INTO saga_types (name, fingerprint, shape, recorded_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            params![name, fingerprint, shape, millis(SystemTime::now())],
        )
        .map(|_| Outcome::RecordType),
    }
}

/// Sends a request its own result, or the commit's error. A requester that went away no longer
/// needs its answer.
fn reply(request: Request, outcome: Result<Outcome, StoreError>, commit: Result<(), StoreError>) {
    let outcome = commit.and(outcome);
    fn answer<T>(
        tx: Reply<T>,
        outcome: Result<Outcome, StoreError>,
        spent: Spent,
        take: impl FnOnce(Outcome) -> Option<T>,
    ) {
        let result = outcome.and_then(|o| {
            take(o).ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Unavailable,
                    "the writer answered another request",
                )
            })
        });
        let _ = tx.send(Answer { result, spent });
    }
    match request {
        Request::Create(creating, tx) => {
            answer(tx, outcome, Spent::Create(creating), |o| match o {
                Outcome::Create(created) => Some(created),
                _ => None,
            })
        }
        Request::Write(_, _, encoded, folded, tx) => {
            let spent = Spent::Write(encoded, folded);
            answer(tx, outcome, spent, |o| match o {
                Outcome::Write(version) => Some(version),
                _ => None,
            })
        }
        Request::Acquire(_, tx) => answer(tx, outcome, Spent::Nothing, |o| match o {
            Outcome::Acquire(records) => Some(records),
            _ => None,
        }),
        Request::Renew(_, _, _, tx) => answer(tx, outcome, Spent::Nothing, |o| match o {
            Outcome::Renew(held) => Some(held),
            _ => None,
        }),
        Request::Release(_, _, _, tx) => answer(tx, outcome, Spent::Nothing, |o| match o {
            Outcome::Release => Some(()),
            _ => None,
        }),
        Request::Operator(_, _, _, tx) => answer(tx, outcome, Spent::Nothing, |o| match o {
            Outcome::Operator(answer) => Some(*answer),
            _ => None,
        }),
        Request::RecordType(_, _, _, tx) => answer(tx, outcome, Spent::Nothing, |o| match o {
            Outcome::RecordType => Some(()),
            _ => None,
        }),
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
pub(super) fn execute_cached(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map_err(store_error)
}

pub(super) fn expiry(duration: Duration) -> i64 {
    millis(SystemTime::now())
        .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

/// Leases the sagas `request` asks for (see [`crate::store::SagaStore::acquire`]).
fn acquire(
    conn: &Connection,
    request: &Acquire,
) -> Result<Vec<Result<SagaRecord, CorruptRecord>>, StoreError> {
    let now = millis(SystemTime::now());
    let owner = &*request.lease.owner;
    // Other incarnations of this worker: the same name before '#'.
    let prefix = match owner.split_once('#') {
        Some((name, _)) if request.reclaim_own => Some(format!("{name}#")),
        _ => None,
    };
    let types = request
        .types
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(store_error)?;
    let candidates: Vec<(i64, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT seq, id, owner FROM sagas
             WHERE terminal = 0
               AND (((owner IS NULL OR lease_until <= ?1)
                     AND (wake_at IS NULL OR wake_at <= ?1 OR ?6 IS NOT NULL))
                    OR (?2 IS NOT NULL AND owner != ?3 AND substr(owner, 1, length(?2)) = ?2))
               AND (?4 IS NULL OR saga_type IN (SELECT value FROM json_each(?4)))
               AND (?6 IS NULL OR id = ?6)
             ORDER BY id LIMIT ?5",
        )
        .and_then(|mut statement| {
            statement
                .query_map(
                    params![
                        now,
                        prefix,
                        owner,
                        types,
                        request.limit as i64,
                        request.only.map(|id| id.to_string())
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )?
                .collect()
        })
        .map_err(store_error)?;
    let lease_until = expiry(request.lease.duration);
    let mut records = Vec::with_capacity(candidates.len());
    for (seq, id, previous) in candidates {
        execute_cached(
            conn,
            "UPDATE sagas SET owner = ?2, token = token + 1, lease_until = ?3, wake_at = NULL
             WHERE seq = ?1",
            params![seq, owner, lease_until],
        )?;
        if previous.is_some() {
            // Taken from a worker that held it: one more recovery without progress.
            conn.prepare_cached(
                "UPDATE sagas SET state = json_set(state, '$.recovery_attempts',
                     coalesce(json_extract(state, '$.recovery_attempts'), 0) + 1)
                 WHERE seq = ?1 AND json_valid(state)",
            )
            .and_then(|mut statement| statement.execute([seq]))
            .map_err(store_error)?;
        }
        let record = super::reads::load_record(conn, &id)?.ok_or_else(|| {
            StoreError::new(StoreErrorKind::Conflict, "saga vanished during acquire")
        })?;
        records.push(record);
    }
    Ok(records)
}

fn renew(
    conn: &Connection,
    owner: &str,
    ids: &[SagaId],
    duration: Duration,
) -> Result<Vec<Held>, StoreError> {
    let ids: Vec<String> = ids.iter().map(SagaId::to_string).collect();
    let ids = serde_json::to_string(&ids).map_err(store_error)?;
    let rows: Vec<(String, i64, bool)> = conn
        .prepare_cached(
            "UPDATE sagas SET lease_until = ?2
             WHERE terminal = 0 AND owner = ?1 AND id IN (SELECT value FROM json_each(?3))
             RETURNING id, token, cancel_requested",
        )
        .and_then(|mut statement| {
            statement
                .query_map(params![owner, expiry(duration), ids], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect()
        })
        .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, token, cancel)| Some(Held::new(id.parse().ok()?, token as u64, cancel)))
        .collect())
}
