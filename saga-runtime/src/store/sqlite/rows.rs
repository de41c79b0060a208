//! A saga's row and history as a create or a write leaves them: one insert or one update of the
//! row (its state folded by the caller when it can, here otherwise) that appends the new history
//! entries to the row's (see [`super::history`]), the fence checked first (in the update itself
//! when the row's `seq` is known).

use std::time::SystemTime;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use super::codec::{
    fold, json, millis, store_error, unreadable, Creating, Encoded, EncodedWrite, Folded,
};
use super::history;
use super::writer::{execute_cached, expiry, Prepared};
use crate::id::IdMap;
use crate::store::{
    check_fence, Admission, Created, Fence, Lease, LeaseRequest, Requested, SagaRecord, SagaState,
    StoreError, StoreErrorKind,
};
use crate::{OperatorRequest, Refusal, SagaId, SagaStatus};

/// Inserts a new saga's row (see [`create`]); nothing when its id or key is taken.
pub(super) const INSERT: &str = "INSERT INTO sagas (id, saga_type, steps, status, terminal, state,
        context, idempotency_key, events, token, owner, lease_until, wake_at, created_at,
        updated_at, history)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
    ON CONFLICT DO NOTHING";

/// Updates a saga's row by its `seq` if the fence holds (see `write_fenced`).
pub(super) const UPDATE: &str = "UPDATE sagas SET updated_at = ?3, status = ?4, state = ?5,
        context = coalesce(?6, context), events = ?7, wake_at = ?8, history = history || ?11
    WHERE seq = ?1 AND id = ?2 AND terminal = 0 AND owner IS NOT NULL
        AND token = ?9 AND events = ?10";

/// [`UPDATE`] for a write that ends the saga: as in `write`, only such a write touches
/// `terminal` (and the index of unfinished sagas), and it ends the lease.
pub(super) const UPDATE_ENDING: &str = "UPDATE sagas SET updated_at = ?3, status = ?4, state = ?5,
        context = coalesce(?6, context), events = ?7, wake_at = ?8, terminal = 1, owner = NULL,
        lease_until = NULL, history = history || ?11
    WHERE seq = ?1 AND id = ?2 AND terminal = 0 AND owner IS NOT NULL
        AND token = ?9 AND events = ?10";

/// Records a new saga, in one insert of its row as its first writes leave it (`folded`), its
/// history with it; or finds the saga with its id or idempotency key.
pub(super) fn create(
    db: &Prepared<'_>,
    seqs: &mut Seqs,
    creating: &Creating,
) -> Result<Created, StoreError> {
    let conn = db.conn;
    let Creating {
        saga,
        encoded,
        folded,
        context: initial,
        steps,
    } = creating;
    let (writes, entries) = (&encoded.writes, &encoded.entries);
    let id = saga.id.to_string();
    // The context the last write committed, or the initial one.
    let context = writes
        .iter()
        .rev()
        .find_map(|w| w.context.as_deref())
        .or(initial.as_deref());
    let now = millis(SystemTime::now());
    let updated = writes.last().map_or(now, |w| millis(w.at));
    let (owner, token, lease_until) = match &saga.lease {
        // A saga that its first writes end holds no lease (as `write` leaves it).
        Some(lease) if !folded.terminal => (Some(&*lease.owner), 1, Some(expiry(lease.duration))),
        Some(_) => (None, 1, None),
        None => (None, 0, None),
    };
    let events = 1 + writes.len() as i64;
    history::room(&id, (0, events))?;
    // A saga with this id or idempotency key already: the insert does nothing (the unique
    // indexes tell, so a new saga, the common case, costs no lookup of its own).
    let inserted = Prepared::run(
        &db.insert,
        params![
            id,
            saga.saga_type,
            steps,
            folded.status,
            folded.terminal,
            folded.state,
            context,
            saga.idempotency_key,
            events,
            token,
            owner,
            lease_until,
            folded.wake,
            now,
            updated,
            entries,
        ],
    )?;
    if inserted == 0 {
        return existing(conn, &id, saga.idempotency_key.as_deref());
    }
    let seq = conn.last_insert_rowid();
    if !folded.terminal {
        seqs.insert(saga.id, seq);
    }
    history::bound(conn, (&id, seq), (0, events))?;
    let version = events as u64;
    let lease = saga
        .lease
        .as_ref()
        .filter(|_| owner.is_some())
        .map(|lease| Lease {
            owner: lease.owner.clone(),
            token: 1,
            expires_at: super::codec::time(lease_until.unwrap_or(now)),
        });
    Ok(Created::New { version, lease })
}

/// The saga a create found with its id or its idempotency key.
fn existing(conn: &Connection, id: &str, key: Option<&str>) -> Result<Created, StoreError> {
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM sagas WHERE id = ?1 OR (?2 IS NOT NULL AND idempotency_key = ?2)",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![id, key], |row| row.get(0))
                .optional()
        })
        .map_err(store_error)?;
    let vanished = || StoreError::new(StoreErrorKind::Conflict, "saga vanished during create");
    let record = super::reads::load_record(conn, &existing.ok_or_else(vanished)?)?
        .ok_or_else(vanished)?
        .map_err(|corrupt| unreadable(corrupt.message))?;
    Ok(Created::Existing(Box::new(record)))
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

/// Folds `writes` into the state stored in `row`. A state that does not decode is kept as it is
/// (an empty `state` in the result): only a status-only write (parking the saga) may go on.
fn fold_stored(id: SagaId, row: &Row, writes: &[EncodedWrite]) -> Result<Folded, StoreError> {
    match row.state() {
        Ok(mut state) => fold(&mut state, writes),
        Err(message) => {
            let status = writes.iter().rev().find_map(|w| w.status.as_ref());
            let status_only = writes
                .iter()
                .all(|w| matches!(w.change, crate::machine::Change::None));
            let (Some(status), true) = (status, status_only) else {
                return Err(unreadable(format!("saga {id}: bad state: {message}")));
            };
            Ok(Folded {
                state: String::new(),
                status: json::status_string(status).map_err(store_error)?,
                terminal: status.is_terminal(),
                wake: None,
            })
        }
    }
}

/// Applies a request's transitions, in order, if `fence` holds (always, for `None`): one
/// `UPDATE` of the saga's row to what the writes leave (its state folded by
/// [`SagaState::apply`], here or, given as `folded`, by the caller from the state at the version
/// the fence names), one history insert per write. The row is read first unless the write is
/// fenced, folded and its row's `seq` known (see [`write_fenced`]). Returns the new version.
pub(super) fn write(
    db: &Prepared<'_>,
    seqs: &mut Seqs,
    id: SagaId,
    fence: Option<Fence>,
    encoded: &Encoded,
    folded: Option<&Folded>,
) -> Result<u64, StoreError> {
    let conn = db.conn;
    let (writes, entries) = (&*encoded.writes, &encoded.entries);
    let text_id = id.to_string();
    if let (Some(fence), Some(folded), Some(&seq)) = (fence, folded, seqs.get(&id)) {
        if let Some(version) = write_fenced(db, (&text_id, seq), fence, encoded, folded)? {
            if folded.terminal {
                seqs.remove(&id);
            }
            return Ok(version);
        }
    }
    let row = read_row(conn, &text_id)?.ok_or_else(|| StoreError::not_found(id))?;
    seqs.insert(id, row.seq);
    if let Some(fence) = fence {
        row.check(id, fence)?;
    }
    if writes.is_empty() {
        return Ok(row.events as u64);
    }
    let folded_here;
    // The stored state is decoded only when the caller did not fold the writes already.
    let (state, status, terminal, wake) = match folded {
        Some(folded) => (
            Some(&*folded.state),
            &*folded.status,
            folded.terminal,
            folded.wake,
        ),
        None => {
            folded_here = fold_stored(id, &row, writes)?;
            let state = (!folded_here.state.is_empty()).then_some(&*folded_here.state);
            (
                state,
                &*folded_here.status,
                folded_here.terminal,
                folded_here.wake,
            )
        }
    };
    let context = writes.iter().rev().find_map(|w| w.context.as_deref());
    let last = writes.last().expect("not empty").at;
    let events = row.events + writes.len() as i64;
    let sets_terminal = terminal != row.terminal;
    history::room(&text_id, (row.events, events))?;
    let changed = execute_cached(
        conn,
        if sets_terminal {
            // Setting `terminal` rewrites the saga's entry in the index of unfinished sagas
            // even when the value stays the same, and most writes keep it: only this statement
            // sets it. A terminal saga has no lease.
            "UPDATE sagas SET updated_at = ?2, status = ?3, state = coalesce(?4, state),
                 context = coalesce(?5, context), events = ?6, wake_at = ?7, terminal = ?8,
                 owner = CASE WHEN ?8 THEN NULL ELSE owner END,
                 lease_until = CASE WHEN ?8 THEN NULL ELSE lease_until END,
                 history = history || ?9
             WHERE seq = ?1"
        } else {
            "UPDATE sagas SET updated_at = ?2, status = ?3, state = coalesce(?4, state),
                 context = coalesce(?5, context), events = ?6, wake_at = ?7,
                 history = history || ?9
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
            terminal,
            entries,
        ],
    )?;
    if changed == 0 {
        return Err(StoreError::not_found(id));
    }
    history::bound(conn, (&text_id, row.seq), (row.events, events))?;
    Ok(events as u64)
}

/// Saga ids and their rows' `seq`, as this writer inserted or read them: a write then updates
/// the row by its primary key, the fence checked in the same statement, without reading the row
/// first. Bounded: past the bound it starts over, which only costs the next writes a read.
#[derive(Default)]
pub(super) struct Seqs(IdMap<i64>);

impl Seqs {
    const KEPT: usize = 65_536;

    fn get(&self, id: &SagaId) -> Option<&i64> {
        self.0.get(id)
    }

    fn insert(&mut self, id: SagaId, seq: i64) {
        if self.0.len() >= Self::KEPT {
            self.0.clear();
        }
        self.0.insert(id, seq);
    }

    fn remove(&mut self, id: &SagaId) {
        self.0.remove(id);
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// The common write: fenced, its state folded by the caller, its row's `seq` known. One
/// `UPDATE` that changes the row only if the fence holds (the token is the saga's, the version
/// its number of history entries, the saga not terminal) and the row is still this saga's,
/// then the history inserts. `None` when it changed nothing: the caller reads the row to say
/// why (or to write after all, with a `seq` that was stale).
fn write_fenced(
    db: &Prepared<'_>,
    (text_id, seq): (&str, i64),
    fence: Fence,
    encoded: &Encoded,
    folded: &Folded,
) -> Result<Option<u64>, StoreError> {
    let (writes, entries) = (&encoded.writes, &encoded.entries);
    let Some(last) = writes.last() else {
        return Ok(None);
    };
    let version = i64::try_from(fence.version).unwrap_or(i64::MAX);
    let token = i64::try_from(fence.token).unwrap_or(i64::MAX);
    let events = version + writes.len() as i64;
    history::room(text_id, (version, events))?;
    let context = writes.iter().rev().find_map(|w| w.context.as_deref());
    let changed = Prepared::run(
        match folded.terminal {
            true => &db.update_ending,
            false => &db.update,
        },
        params![
            seq,
            text_id,
            millis(last.at),
            folded.status,
            folded.state,
            context,
            events,
            folded.wake,
            token,
            version,
            entries,
        ],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    history::bound(db.conn, (text_id, seq), (version, events))?;
    Ok(Some(events as u64))
}

/// Ends the lease on a saga, if `fence` holds; it is not acquired before `wake_at`.
pub(super) fn release(
    conn: &Connection,
    id: SagaId,
    fence: Fence,
    wake_at: Option<SystemTime>,
) -> Result<(), StoreError> {
    let text_id = id.to_string();
    let row = read_row(conn, &text_id)?.ok_or_else(|| StoreError::not_found(id))?;
    row.check(id, fence)?;
    execute_cached(
        conn,
        "UPDATE sagas SET owner = NULL, lease_until = NULL, wake_at = ?2 WHERE seq = ?1",
        params![row.seq, wake_at.map(millis)],
    )
    .map(drop)
}

/// An operator's request (see [`crate::store::SagaStore::request`]).
pub(super) fn operator(
    db: &Prepared<'_>,
    id: SagaId,
    request: OperatorRequest,
    lease: Option<&LeaseRequest>,
) -> Result<Result<SagaRecord, Refusal>, StoreError> {
    let conn = db.conn;
    let text_id = id.to_string();
    let load = || -> Result<SagaRecord, StoreError> {
        super::reads::load_record(conn, &text_id)?
            .ok_or_else(|| StoreError::not_found(id))?
            .map_err(|corrupt| unreadable(format!("saga {id}: {}", corrupt.message)))
    };
    let record = load()?;
    let now = SystemTime::now();
    let saga = Requested {
        id,
        saga_type: &record.saga_type,
        steps: record.steps.len(),
        at: now,
    };
    let admission = match record.state.admit(request, saga) {
        Ok(admission) => admission,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let seq = read_row(conn, &text_id)?
        .ok_or_else(|| StoreError::not_found(id))?
        .seq;
    match admission {
        Admission::Cancel => {
            // A saga no live worker holds is due at once.
            execute_cached(
                conn,
                "UPDATE sagas SET cancel_requested = 1,
                     wake_at = CASE WHEN owner IS NULL OR lease_until <= ?2 THEN NULL
                                    ELSE wake_at END
                 WHERE seq = ?1",
                params![seq, millis(now)],
            )?;
        }
        Admission::Reopen(write) => {
            // The operator's write reopens it (its status is not terminal), unfenced: an ended
            // saga has no holder. Then the caller's lease, if it asked for one.
            let encoded = super::codec::encode(None, &mut vec![*write])?;
            self::write(db, &mut Seqs::default(), id, None, &encoded, None)?;
            execute_cached(
                conn,
                "UPDATE sagas SET wake_at = NULL WHERE seq = ?1",
                [seq],
            )?;
            if let Some(lease) = lease {
                execute_cached(
                    conn,
                    "UPDATE sagas SET owner = ?2, token = token + 1, lease_until = ?3
                     WHERE seq = ?1",
                    params![seq, &*lease.owner, expiry(lease.duration)],
                )?;
            }
        }
    }
    load().map(Ok)
}
