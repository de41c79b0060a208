//! A saga's row and history on PostgreSQL: each request of the store contract as one
//! transaction.

use std::time::{Duration, SystemTime};

use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use super::reads::{load_decoded, record, RECORD_COLUMNS};

use crate::event::SagaEvent;
use crate::machine::{Admission, Requested, SagaState, Write};
use crate::store::encoding::{encode_event, millis, time};
use crate::store::{
    check_fence, Acquire, CorruptRecord, Created, Fence, Held, Lease, LeaseRequest, NewSaga,
    SagaRecord, StoreError, StoreErrorKind,
};
use crate::{OperatorRequest, Refusal, SagaId};

/// A PostgreSQL error as a store error of the matching kind: `Unavailable` only for what waiting
/// can cure (the connection dropped, the server is shutting down or starting), so that only those
/// are retried.
pub(super) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    let kind = match error.code().map(|code| code.code()) {
        None => StoreErrorKind::Unavailable,
        Some(code) if code.starts_with("08") || code.starts_with("57P") => {
            StoreErrorKind::Unavailable
        }
        Some("23505") => StoreErrorKind::Conflict,
        Some("40001" | "40P01" | "55P03") => StoreErrorKind::Busy,
        Some(_) => StoreErrorKind::Invalid,
    };
    StoreError::new(kind, format!("PostgreSQL: {error}")).with_source(error)
}

/// A pool that gave no connection.
pub(super) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        format!("PostgreSQL connection pool: {error}"),
    )
    .with_source(error)
}

fn json_error(what: &str, error: serde_json::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Invalid, format!("{what}: {error}"))
}

/// The statements, with the store's schema in their table names.
pub(super) struct Sql {
    pub(super) schema: String,
    pub(super) sagas: String,
    pub(super) history: String,
}

impl Sql {
    pub(super) fn new(schema: &str) -> Self {
        Sql {
            schema: schema.to_owned(),
            sagas: format!("{schema}.sagas"),
            history: format!("{schema}.saga_history"),
        }
    }
}

pub(super) fn now() -> i64 {
    millis(SystemTime::now())
}

fn expiry(duration: Duration) -> i64 {
    now().saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

/// Appends `events` to saga `id`'s history from position `from`.
async fn append(
    client: &impl GenericClient,
    sql: &Sql,
    id: &str,
    from: i64,
    events: &[&SagaEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let encoded = events
        .iter()
        .map(|e| encode_event(e))
        .collect::<Result<Vec<String>, _>>()?;
    let positions: Vec<i64> = (from..).take(encoded.len()).collect();
    client
        .execute(
            &format!(
                "INSERT INTO {} (saga, n, event) SELECT $1, * FROM unnest($2::bigint[], $3::text[])",
                sql.history
            ),
            &[&id, &positions, &encoded],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// The row's columns after `writes` fold into `state`: the state and status as JSON, the status's
/// name, whether it is terminal, the last committed context (if a write committed one).
struct Folded {
    state: String,
    status: String,
    status_name: &'static str,
    terminal: bool,
    wake: Option<i64>,
    context: Option<Vec<u8>>,
}

fn fold(state: &mut SagaState, writes: &[Write]) -> Result<Folded, StoreError> {
    let mut context = None;
    for write in writes {
        state.apply(write);
        if let Some(committed) = &write.context {
            context = Some(committed);
        }
    }
    let context = context
        .map(|c| c.to_json().map(|j| j.to_vec()))
        .transpose()
        .map_err(|e| json_error("the context does not serialize", e))?;
    Ok(Folded {
        state: serde_json::to_string(&*state).map_err(|e| json_error("state", e))?,
        status: serde_json::to_string(&state.status).map_err(|e| json_error("status", e))?,
        status_name: state.status.name(),
        terminal: state.status.is_terminal(),
        wake: state.wake_at().map(millis),
        context,
    })
}

/// Records a new saga with its first writes, or returns the one with its id or key.
///
/// `retried`: an earlier attempt's connection dropped, so it may have committed; finding this very
/// saga as it would have left it (same id, version and owner) is then its creation, not an
/// existing saga.
pub(super) async fn create(
    client: &mut deadpool_postgres::Object,
    sql: &Sql,
    saga: &NewSaga,
    writes: &[Write],
    retried: bool,
) -> Result<Created, StoreError> {
    let id = saga.id.to_string();
    let mut state = saga.initial_state();
    let folded = fold(&mut state, writes)?;
    let context = match folded.context {
        Some(context) => context,
        None => saga
            .context
            .to_json()
            .map_err(|e| json_error("the context does not serialize", e))?
            .to_vec(),
    };
    let steps = serde_json::to_string(&saga.steps).map_err(|e| json_error("steps", e))?;
    let created_at = millis(saga.started.at);
    let updated_at = writes.last().map_or(created_at, |w| millis(w.event.at));
    let (owner, token, lease_until) = match &saga.lease {
        Some(lease) if !folded.terminal => (
            Some(lease.owner.to_string()),
            1i64,
            Some(expiry(lease.duration)),
        ),
        Some(_) => (None, 1, None),
        None => (None, 0, None),
    };
    let events = 1 + writes.len() as i64;
    let tx = client.transaction().await.map_err(pg_error)?;
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO {} (id, saga_type, steps, status, status_name, terminal, state,
                                 context, idempotency_key, events, token, owner, lease_until,
                                 wake_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT DO NOTHING",
                sql.sagas
            ),
            &[
                &id,
                &saga.saga_type,
                &steps,
                &folded.status,
                &folded.status_name,
                &folded.terminal,
                &folded.state,
                &context,
                &saga.idempotency_key,
                &events,
                &token,
                &owner,
                &lease_until,
                &folded.wake,
                &created_at,
                &updated_at,
            ],
        )
        .await
        .map_err(pg_error)?;
    if inserted == 0 {
        // Its id or key is taken (perhaps by a concurrent start): that saga is the answer.
        drop(tx);
        let row = client
            .query_opt(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM {} WHERE id = $1 OR idempotency_key = $2",
                    sql.sagas
                ),
                &[&id, &saga.idempotency_key],
            )
            .await
            .map_err(pg_error)?
            .ok_or_else(|| {
                StoreError::new(StoreErrorKind::Conflict, "saga vanished during create")
            })?;
        let existing = record(&row)
            .map_err(|corrupt| StoreError::new(StoreErrorKind::Corrupt, corrupt.message))?;
        let ours = retried
            && existing.id == saga.id
            && existing.version == events as u64
            && existing.lease.as_ref().map(|l| &*l.owner) == owner.as_deref();
        if ours {
            return Ok(Created::New {
                version: existing.version,
                lease: existing.lease,
            });
        }
        return Ok(Created::Existing(Box::new(existing)));
    }
    let history: Vec<&SagaEvent> = std::iter::once(&saga.started)
        .chain(writes.iter().map(|w| &w.event))
        .collect();
    append(&*tx, sql, &id, 0, &history).await?;
    tx.commit().await.map_err(pg_error)?;
    let lease = match (&saga.lease, owner, lease_until) {
        (Some(lease), Some(_), Some(until)) => Some(Lease {
            owner: lease.owner.clone(),
            token: 1,
            expires_at: time(until),
        }),
        _ => None,
    };
    Ok(Created::New {
        version: events as u64,
        lease,
    })
}

/// The row a write locks: its fence, status and state.
struct Locked {
    token: Option<u64>,
    events: i64,
    state: String,
}

async fn lock(
    client: &impl GenericClient,
    sql: &Sql,
    id: SagaId,
) -> Result<Option<Locked>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT token, owner, events, state FROM {} WHERE id = $1 FOR UPDATE",
                sql.sagas
            ),
            &[&id.to_string()],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.map(|row| Locked {
        token: row
            .get::<_, Option<String>>(1)
            .map(|_| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)),
        events: row.get(2),
        state: row.get(3),
    }))
}

fn decode_state(id: SagaId, state: &str) -> Result<SagaState, StoreError> {
    serde_json::from_str(state).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!("saga {id}: bad state: {e}"),
        )
    })
}

/// Applies `writes` to a locked row (its state `state`, at version `events`) and its history.
async fn apply(
    client: &impl GenericClient,
    sql: &Sql,
    id: SagaId,
    mut state: SagaState,
    events: i64,
    writes: &[Write],
) -> Result<u64, StoreError> {
    let folded = fold(&mut state, writes)?;
    let version = events + writes.len() as i64;
    let updated_at = writes.last().map_or_else(now, |w| millis(w.event.at));
    client
        .execute(
            &format!(
                "UPDATE {} SET state = $2, status = $3, status_name = $4, terminal = $5,
                     context = coalesce($6, context), events = $7, wake_at = $8, updated_at = $9,
                     owner = CASE WHEN $5 THEN NULL ELSE owner END,
                     lease_until = CASE WHEN $5 THEN NULL ELSE lease_until END
                 WHERE id = $1",
                sql.sagas
            ),
            &[
                &id.to_string(),
                &folded.state,
                &folded.status,
                &folded.status_name,
                &folded.terminal,
                &folded.context,
                &version,
                &folded.wake,
                &updated_at,
            ],
        )
        .await
        .map_err(pg_error)?;
    let history: Vec<&SagaEvent> = writes.iter().map(|w| &w.event).collect();
    append(client, sql, &id.to_string(), events, &history).await?;
    Ok(version as u64)
}

/// Locks saga `id`'s row and checks `fence` against it (see [`check_fence`]); its state and
/// version.
async fn lock_fenced(
    client: &impl GenericClient,
    sql: &Sql,
    id: SagaId,
    fence: Fence,
) -> Result<(SagaState, i64), StoreError> {
    let locked = lock(client, sql, id)
        .await?
        .ok_or_else(|| StoreError::not_found(id))?;
    let state = decode_state(id, &locked.state)?;
    let version = u64::try_from(locked.events).unwrap_or(0);
    check_fence(id, fence, locked.token, &state.status, version)?;
    Ok((state, locked.events))
}

/// Records `writes` if `fence` holds.
///
/// `retried`: an earlier attempt's connection dropped, so it may have committed; a saga whose
/// history ends with these very writes is then answered as written.
pub(super) async fn write(
    client: &mut deadpool_postgres::Object,
    sql: &Sql,
    id: SagaId,
    fence: Fence,
    writes: &[Write],
    retried: bool,
) -> Result<u64, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    if retried {
        if let Some(version) = already_written(&*tx, sql, id, fence, writes).await? {
            return Ok(version);
        }
    }
    let (state, events) = lock_fenced(&*tx, sql, id, fence).await?;
    let version = apply(&*tx, sql, id, state, events, writes).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(version)
}

/// The saga's version if its history already ends with `writes`, written at `fence.version`.
async fn already_written(
    client: &impl GenericClient,
    sql: &Sql,
    id: SagaId,
    fence: Fence,
    writes: &[Write],
) -> Result<Option<u64>, StoreError> {
    let Some(last) = writes.last() else {
        return Ok(None);
    };
    let after = fence.version + writes.len() as u64;
    let query = format!(
        "SELECT s.events, h.event FROM {} s JOIN {} h ON h.saga = s.id AND h.n = $2 \
         WHERE s.id = $1",
        sql.sagas, sql.history
    );
    let last_position = i64::try_from(after).unwrap_or(i64::MAX) - 1;
    let row = client
        .query_opt(&query, &[&id.to_string(), &last_position])
        .await
        .map_err(pg_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let written = u64::try_from(row.get::<_, i64>(0)).ok() == Some(after)
        && row.get::<_, String>(1) == encode_event(&last.event)?;
    Ok(written.then_some(after))
}

/// Leases the sagas `request` asks for.
pub(super) async fn acquire(
    client: &mut deadpool_postgres::Object,
    sql: &Sql,
    request: &Acquire,
) -> Result<Vec<Result<SagaRecord, CorruptRecord>>, StoreError> {
    let now = now();
    let owner = &*request.lease.owner;
    // Other incarnations of this worker: the same name before '#'.
    let prefix = match owner.split_once('#') {
        Some((name, _)) if request.reclaim_own => Some(format!("{name}#")),
        _ => None,
    };
    let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
    let tx = client.transaction().await.map_err(pg_error)?;
    let candidates = tx
        .query(
            &format!(
                "SELECT id, owner FROM {} WHERE NOT terminal
                   AND (((owner IS NULL OR lease_until <= $1)
                         AND (wake_at IS NULL OR wake_at <= $1))
                        OR ($2::text IS NOT NULL AND owner <> $3 AND starts_with(owner, $2)))
                   AND ($4::text[] IS NULL OR saga_type = ANY($4))
                 ORDER BY seq LIMIT $5 FOR UPDATE SKIP LOCKED",
                sql.sagas
            ),
            &[&now, &prefix, &owner, &request.types, &limit],
        )
        .await
        .map_err(pg_error)?;
    let lease_until = expiry(request.lease.duration);
    let mut records = Vec::with_capacity(candidates.len());
    for row in candidates {
        let id: String = row.get(0);
        let previous: Option<String> = row.get(1);
        let updated = tx
            .query_one(
                &format!(
                    "UPDATE {} SET owner = $2, token = token + 1, lease_until = $3, wake_at = NULL
                     WHERE id = $1 RETURNING {RECORD_COLUMNS}",
                    sql.sagas
                ),
                &[&id, &owner, &lease_until],
            )
            .await
            .map_err(pg_error)?;
        let mut taken = record(&updated);
        if let (Ok(record), Some(_)) = (&mut taken, previous) {
            // Taken from a worker that held it: one more recovery without progress.
            record.state.recovery_attempts += 1;
            let state = serde_json::to_string(&record.state).map_err(|e| json_error("state", e))?;
            tx.execute(
                &format!("UPDATE {} SET state = $2 WHERE id = $1", sql.sagas),
                &[&id, &state],
            )
            .await
            .map_err(pg_error)?;
        }
        records.push(taken);
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(records)
}

/// Extends `owner`'s leases on those of `ids` it holds.
pub(super) async fn renew(
    client: &impl GenericClient,
    sql: &Sql,
    owner: &str,
    ids: &[String],
    duration: Duration,
) -> Result<Vec<Held>, StoreError> {
    let rows = client
        .query(
            &format!(
                "UPDATE {} SET lease_until = $2
                 WHERE NOT terminal AND owner = $1 AND id = ANY($3)
                 RETURNING id, token, cancel_requested",
                sql.sagas
            ),
            &[&owner, &expiry(duration), &ids],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let id = row.get::<_, String>(0).parse().ok()?;
            let token = u64::try_from(row.get::<_, i64>(1)).ok()?;
            Some(Held::new(id, token, row.get(2)))
        })
        .collect())
}

/// Ends the lease `fence` names; the saga is not acquired before `wake_at`.
pub(super) async fn release(
    client: &mut deadpool_postgres::Object,
    sql: &Sql,
    id: SagaId,
    fence: Fence,
    wake_at: Option<SystemTime>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    lock_fenced(&*tx, sql, id, fence).await?;
    tx.execute(
        &format!(
            "UPDATE {} SET owner = NULL, lease_until = NULL, wake_at = $2 WHERE id = $1",
            sql.sagas
        ),
        &[&id.to_string(), &wake_at.map(millis)],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

/// An operator's request (see [`crate::store::SagaStore::request`]).
pub(super) async fn request(
    client: &mut deadpool_postgres::Object,
    sql: &Sql,
    id: SagaId,
    request: OperatorRequest,
    lease: Option<LeaseRequest>,
) -> Result<Result<SagaRecord, Refusal>, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let locked = lock(&*tx, sql, id)
        .await?
        .ok_or_else(|| StoreError::not_found(id))?;
    let record = load_decoded(&*tx, sql, id).await?;
    let at = SystemTime::now();
    let saga = Requested {
        id,
        saga_type: &record.saga_type,
        steps: record.steps.len(),
        at,
    };
    let admission = match record.state.admit(request, saga) {
        Ok(admission) => admission,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let text_id = id.to_string();
    match admission {
        Admission::Cancel => {
            tx.execute(
                &format!(
                    "UPDATE {} SET cancel_requested = TRUE,
                         wake_at = CASE WHEN owner IS NULL OR lease_until <= $2 THEN NULL
                                        ELSE wake_at END
                     WHERE id = $1",
                    sql.sagas
                ),
                &[&text_id, &millis(at)],
            )
            .await
            .map_err(pg_error)?;
        }
        Admission::Reopen(write) => {
            // Unfenced: an ended saga has no holder. Then the caller's lease, if it asked.
            let state = record.state.clone();
            apply(
                &*tx,
                sql,
                id,
                state,
                locked.events,
                std::slice::from_ref(&*write),
            )
            .await?;
            let params: [&(dyn ToSql + Sync); 1] = [&text_id];
            tx.execute(
                &format!("UPDATE {} SET wake_at = NULL WHERE id = $1", sql.sagas),
                &params,
            )
            .await
            .map_err(pg_error)?;
            if let Some(lease) = lease {
                tx.execute(
                    &format!(
                        "UPDATE {} SET owner = $2, token = token + 1, lease_until = $3
                         WHERE id = $1",
                        sql.sagas
                    ),
                    &[&text_id, &&*lease.owner, &expiry(lease.duration)],
                )
                .await
                .map_err(pg_error)?;
            }
        }
    }
    let record = load_decoded(&*tx, sql, id).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(Ok(record))
}
