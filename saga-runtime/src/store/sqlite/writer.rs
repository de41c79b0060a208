//! The writer thread: takes every request queued at that moment, applies them in one
//! transaction, commits once (group commit), then answers every request.
//!
//! Each request is applied as if in its own savepoint, so that one bad (or refused) request fails
//! alone. As requests almost never fail, the batch is first applied without savepoints (they
//! cost a copy of every page a request touches); only when a request fails is that attempt
//! rolled back and the batch applied again with one savepoint per request. Every statement the
//! writer runs is prepared once.

use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::codec::{self, fold, millis, store_error, unreadable, EncodedWrite, Folded};
use super::schema::{history_key, HISTORY_POSITION_BITS};
use crate::machine::SagaState;
use crate::store::handoff;
use crate::store::{
    check_fence, Acquire, CorruptRecord, Created, Fence, Lease, LeaseRequest, NewSaga, SagaRecord,
    StoreError, StoreErrorKind,
};
use crate::{SagaId, SagaStatus};

/// The most requests one transaction takes; bounds the latency of the first in a large batch.
const MAX_BATCH: usize = 4096;

/// One request to the writer, with where its answer goes.
pub(super) enum Request {
    /// The saga, its "saga started" event and its first writes, encoded.
    Create(
        Box<NewSaga>,
        String,
        Vec<EncodedWrite>,
        oneshot::Sender<Result<Created, StoreError>>,
    ),
    /// The writes, and what they leave the row with when the caller folded them already.
    Write(
        SagaId,
        Fence,
        Vec<EncodedWrite>,
        Option<Box<Folded>>,
        oneshot::Sender<Result<u64, StoreError>>,
    ),
    Acquire(
        Box<Acquire>,
        oneshot::Sender<Result<Vec<Result<SagaRecord, CorruptRecord>>, StoreError>>,
    ),
    Renew(
        String,
        Vec<SagaId>,
        Duration,
        oneshot::Sender<Result<Vec<(SagaId, u64)>, StoreError>>,
    ),
    Release(SagaId, Fence, oneshot::Sender<Result<(), StoreError>>),
    Reopen(
        SagaId,
        LeaseRequest,
        Box<EncodedWrite>,
        oneshot::Sender<Result<SagaRecord, StoreError>>,
    ),
}

/// What applying one request gave, before the commit.
enum Outcome {
    Create(Created),
    Write(u64),
    Acquire(Vec<Result<SagaRecord, CorruptRecord>>),
    Renew(Vec<(SagaId, u64)>),
    Release,
    Reopen(Box<SagaRecord>),
}

/// The writer thread's loop; ends once every sender is gone.
pub(super) fn write_loop(conn: Connection, requests: mpsc::Receiver<Request>) {
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
fn commit(conn: &Connection, outcomes: Vec<Result<Outcome, StoreError>>) -> Applied {
    let commit = run_cached(conn, "COMMIT");
    if commit.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
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

fn apply(conn: &Connection, request: &Request) -> Result<Outcome, StoreError> {
    match request {
        Request::Create(saga, started, writes, _) => {
            create(conn, saga, started, writes).map(Outcome::Create)
        }
        Request::Write(id, fence, writes, folded, _) => {
            write(conn, *id, Some(*fence), writes, folded.as_deref()).map(Outcome::Write)
        }
        Request::Acquire(request, _) => acquire(conn, request).map(Outcome::Acquire),
        Request::Renew(owner, ids, duration, _) => {
            renew(conn, owner, ids, *duration).map(Outcome::Renew)
        }
        Request::Release(id, fence, _) => release(conn, *id, *fence).map(|()| Outcome::Release),
        Request::Reopen(id, lease, write, _) => {
            reopen(conn, *id, lease, write).map(|r| Outcome::Reopen(Box::new(r)))
        }
    }
}

/// Sends a request its own result, or the commit's error. A requester that went away no longer
/// needs its answer.
fn reply(request: Request, outcome: Result<Outcome, StoreError>, commit: Result<(), StoreError>) {
    let outcome = commit.and(outcome);
    fn answer<T>(
        tx: oneshot::Sender<Result<T, StoreError>>,
        outcome: Result<Outcome, StoreError>,
        take: impl FnOnce(Outcome) -> Option<T>,
    ) {
        let answer = outcome.and_then(|o| {
            take(o).ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Unavailable,
                    "the writer answered another request",
                )
            })
        });
        let _ = tx.send(answer);
    }
    match request {
        Request::Create(_, _, _, tx) => answer(tx, outcome, |o| match o {
            Outcome::Create(created) => Some(created),
            _ => None,
        }),
        Request::Write(_, _, _, _, tx) => answer(tx, outcome, |o| match o {
            Outcome::Write(version) => Some(version),
            _ => None,
        }),
        Request::Acquire(_, tx) => answer(tx, outcome, |o| match o {
            Outcome::Acquire(records) => Some(records),
            _ => None,
        }),
        Request::Renew(_, _, _, tx) => answer(tx, outcome, |o| match o {
            Outcome::Renew(held) => Some(held),
            _ => None,
        }),
        Request::Release(_, _, tx) => answer(tx, outcome, |o| match o {
            Outcome::Release => Some(()),
            _ => None,
        }),
        Request::Reopen(_, _, _, tx) => answer(tx, outcome, |o| match o {
            Outcome::Reopen(record) => Some(*record),
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
fn execute_cached(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map_err(store_error)
}

fn expiry(duration: Duration) -> i64 {
    millis(SystemTime::now())
        .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
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
        let record = super::reads::load_record(conn, &existing)?
            .ok_or_else(|| {
                StoreError::new(StoreErrorKind::Conflict, "saga vanished during create")
            })?
            .map_err(|corrupt| unreadable(corrupt.message))?;
        return Ok(Created::Existing(Box::new(record)));
    }
    let context = saga.context.to_json().map_err(store_error)?;
    let steps = serde_json::to_string(&saga.steps).map_err(store_error)?;
    let state = SagaState::new(saga.deadline);
    let status = serde_json::to_string(&state.status).map_err(store_error)?;
    let state = serde_json::to_string(&state).map_err(store_error)?;
    let now = millis(SystemTime::now());
    let (owner, token, lease_until) = match &saga.lease {
        Some(lease) => (Some(&*lease.owner), 1, Some(expiry(lease.duration))),
        None => (None, 0, None),
    };
    execute_cached(
        conn,
        "INSERT INTO sagas (id, saga_type, steps, status, state, context, idempotency_key, events,
                            token, owner, lease_until, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9, ?10, ?11, ?11)",
        params![
            id,
            saga.saga_type,
            steps,
            status,
            state,
            &context[..],
            saga.idempotency_key,
            token,
            owner,
            lease_until,
            now,
        ],
    )?;
    insert_event(conn, (&id, conn.last_insert_rowid()), 0, started)?;
    let version = write(conn, saga.id, None, writes, None)?.max(1);
    let lease = saga.lease.as_ref().map(|lease| Lease {
        owner: lease.owner.clone(),
        token: 1,
        expires_at: codec::time(lease_until.unwrap_or(now)),
    });
    Ok(Created::New { version, lease })
}

/// Writes entry `n` of the history of saga `id`, whose `seq` is `saga`.
fn insert_event(
    conn: &Connection,
    (id, saga): (&str, i64),
    n: i64,
    event: &str,
) -> Result<(), StoreError> {
    if n >> HISTORY_POSITION_BITS != 0 {
        return Err(StoreError::new(
            StoreErrorKind::Invalid,
            format!("saga {id} has {n} history entries, the most one saga can keep"),
        ));
    }
    execute_cached(
        conn,
        "INSERT INTO saga_history (key, saga, n, event) VALUES (?1, ?2, ?3, ?4)",
        params![history_key(saga, n), saga, n, event],
    )
    .map(drop)
}

/// What a write needs of a saga's row.
struct Row {
    seq: i64,
    token: Option<u64>,
    terminal: bool,
    events: i64,
    /// The state as stored, decoded only when the request did not bring it folded.
    state: Option<String>,
}

impl Row {
    fn state(&self) -> Result<SagaState, String> {
        match &self.state {
            Some(text) => serde_json::from_str(text).map_err(|e| e.to_string()),
            None => Err("the state is not text".to_owned()),
        }
    }

    /// The status, for a refusal's message: only read when the fence does not hold.
    fn status(&self) -> SagaStatus<usize> {
        match (self.state(), self.terminal) {
            (Ok(state), _) => state.status,
            // A corrupt state: only its terminal flag is known.
            (Err(_), true) => SagaStatus::Parked {
                reason: String::new(),
            },
            (Err(_), false) => SagaStatus::Pending,
        }
    }

    fn check(&self, id: SagaId, fence: Fence) -> Result<(), StoreError> {
        let version = self.events as u64;
        if self.token == Some(fence.token) && !self.terminal && version == fence.version {
            return Ok(());
        }
        check_fence(id, fence, self.token, &self.status(), version)
    }
}

fn read_row(conn: &Connection, id: &str) -> Result<Option<Row>, StoreError> {
    conn.prepare_cached(
        "SELECT seq, token, owner, terminal, events, state FROM sagas WHERE id = ?1",
    )
    .and_then(|mut statement| {
        statement
            .query_row([id], |row| {
                let owner: Option<String> = row.get(2)?;
                Ok(Row {
                    seq: row.get(0)?,
                    token: owner
                        .map(|_| row.get::<_, i64>(1))
                        .transpose()?
                        .map(|t| t as u64),
                    terminal: row.get::<_, i64>(3)? != 0,
                    events: row.get(4)?,
                    state: match row.get_ref(5)? {
                        ValueRef::Text(text) => String::from_utf8(text.to_vec()).ok(),
                        _ => None,
                    },
                })
            })
            .optional()
    })
    .map_err(store_error)
}

/// Applies a request's transitions, in order, if `fence` holds (always, for `None`: a new saga's
/// first writes): one lookup of the saga's row, one `UPDATE` of that row to what the writes leave
/// (its state folded by [`SagaState::apply`], here or, given as `folded`, by the caller from the
/// state at the version the fence names), one history insert per write. Returns the new version.
fn write(
    conn: &Connection,
    id: SagaId,
    fence: Option<Fence>,
    writes: &[EncodedWrite],
    folded: Option<&Folded>,
) -> Result<u64, StoreError> {
    let text_id = id.to_string();
    let row = read_row(conn, &text_id)?.ok_or_else(|| StoreError::not_found(id))?;
    if let Some(fence) = fence {
        row.check(id, fence)?;
    }
    if writes.is_empty() {
        return Ok(row.events as u64);
    }
    let folded_here;
    let (state, status, terminal, wake) = match (folded, row.state()) {
        (Some(folded), _) => (
            Some(&*folded.state),
            &*folded.status,
            folded.terminal,
            folded.wake,
        ),
        (None, Ok(mut state)) => {
            folded_here = fold(&mut state, writes)?;
            (
                Some(&*folded_here.state),
                &*folded_here.status,
                folded_here.terminal,
                folded_here.wake,
            )
        }
        (None, Err(message)) => {
            // A state that does not decode is kept as it is; only a status-only write (parking
            // the saga) may go on.
            let status = writes.iter().rev().find_map(|w| w.status.as_ref());
            let status_only = writes
                .iter()
                .all(|w| matches!(w.change, crate::machine::Change::None));
            let (Some(status), true) = (status, status_only) else {
                return Err(unreadable(format!("saga {id}: bad state: {message}")));
            };
            folded_here = Folded {
                state: String::new(),
                status: serde_json::to_string(status).map_err(store_error)?,
                terminal: status.is_terminal(),
                wake: None,
            };
            (None, &*folded_here.status, folded_here.terminal, None)
        }
    };
    let context = writes.iter().rev().find_map(|w| w.context.as_ref());
    let last = writes.last().expect("not empty").at;
    let events = row.events + writes.len() as i64;
    let sets_terminal = terminal != row.terminal;
    let changed = execute_cached(
        conn,
        if sets_terminal {
            // Setting `terminal` rewrites the saga's entry in the index of unfinished sagas
            // even when the value stays the same, and most writes keep it: only this statement
            // sets it. A terminal saga has no lease.
            "UPDATE sagas SET updated_at = ?2, status = ?3, state = coalesce(?4, state),
                 context = coalesce(?5, context), events = ?6, wake_at = ?7, terminal = ?8,
                 owner = CASE WHEN ?8 THEN NULL ELSE owner END,
                 lease_until = CASE WHEN ?8 THEN NULL ELSE lease_until END
             WHERE seq = ?1"
        } else {
            "UPDATE sagas SET updated_at = ?2, status = ?3, state = coalesce(?4, state),
                 context = coalesce(?5, context), events = ?6, wake_at = ?7
             WHERE seq = ?1 AND terminal = ?8"
        },
        params![
            row.seq,
            millis(last),
            status,
            state,
            context,
            events,
            wake,
            terminal
        ],
    )?;
    if changed == 0 {
        return Err(StoreError::not_found(id));
    }
    (row.events..)
        .zip(writes)
        .try_for_each(|(n, w)| insert_event(conn, (&text_id, row.seq), n, &w.event))?;
    Ok(events as u64)
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
               AND (owner IS NULL OR lease_until <= ?1
                    OR (?2 IS NOT NULL AND owner != ?3 AND substr(owner, 1, length(?2)) = ?2))
               AND (?4 IS NULL OR saga_type IN (SELECT value FROM json_each(?4)))
             ORDER BY id LIMIT ?5",
        )
        .and_then(|mut statement| {
            statement
                .query_map(
                    params![now, prefix, owner, types, request.limit as i64],
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
            "UPDATE sagas SET owner = ?2, token = token + 1, lease_until = ?3 WHERE seq = ?1",
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
) -> Result<Vec<(SagaId, u64)>, StoreError> {
    let ids: Vec<String> = ids.iter().map(SagaId::to_string).collect();
    let ids = serde_json::to_string(&ids).map_err(store_error)?;
    let rows: Vec<(String, i64)> = conn
        .prepare_cached(
            "UPDATE sagas SET lease_until = ?2
             WHERE terminal = 0 AND owner = ?1 AND id IN (SELECT value FROM json_each(?3))
             RETURNING id, token",
        )
        .and_then(|mut statement| {
            statement
                .query_map(params![owner, expiry(duration), ids], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect()
        })
        .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, token)| Some((id.parse().ok()?, token as u64)))
        .collect())
}

fn release(conn: &Connection, id: SagaId, fence: Fence) -> Result<(), StoreError> {
    let text_id = id.to_string();
    let row = read_row(conn, &text_id)?.ok_or_else(|| StoreError::not_found(id))?;
    row.check(id, fence)?;
    execute_cached(
        conn,
        "UPDATE sagas SET owner = NULL, lease_until = NULL WHERE seq = ?1",
        [row.seq],
    )
    .map(drop)
}

fn reopen(
    conn: &Connection,
    id: SagaId,
    lease: &LeaseRequest,
    write: &EncodedWrite,
) -> Result<SagaRecord, StoreError> {
    let text_id = id.to_string();
    let row = read_row(conn, &text_id)?.ok_or_else(|| StoreError::not_found(id))?;
    let state = row
        .state()
        .map_err(|message| unreadable(format!("saga {id}: bad state: {message}")))?;
    if !matches!(state.status, SagaStatus::CompensationFailed { .. }) {
        return Err(StoreError::new(
            StoreErrorKind::Conflict,
            format!(
                "saga {id} is {}; only a compensation-failed saga can be reopened",
                state.status.name()
            ),
        ));
    }
    // The operator's write reopens it (its status is not terminal), then the lease is taken.
    self::write(conn, id, None, std::slice::from_ref(write), None)?;
    execute_cached(
        conn,
        "UPDATE sagas SET owner = ?2, token = token + 1, lease_until = ?3 WHERE seq = ?1",
        params![row.seq, &*lease.owner, expiry(lease.duration)],
    )?;
    super::reads::load_record(conn, &text_id)?
        .ok_or_else(|| StoreError::not_found(id))?
        .map_err(|corrupt| unreadable(corrupt.message))
}
