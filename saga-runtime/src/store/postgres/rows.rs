//! A saga's row and history on PostgreSQL: each request of the store contract as one
//! transaction.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::columns::{json_error, NewRows, Updates};
use super::listen;
use super::reads::{load_decoded, record, RECORD_COLUMNS, RECORD_COLUMN_COUNT};

use crate::machine::{Admission, Requested, SagaState, Write};
use crate::store::encoding::{json, millis};
use crate::store::{
    check_fence, Acquire, CorruptRecord, Created, Fence, Held, LeaseRequest, NewSaga, SagaRecord,
    StoreError, StoreErrorKind,
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

/// The statements, with the store's schema in their table names.
pub(super) struct Sql {
    pub(super) schema: String,
    pub(super) sagas: String,
    pub(super) history: String,
    /// Locks rows `$1` (ids), in id order (so that two writers locking several never deadlock).
    pub(super) lock_sagas: String,
    /// Inserts new sagas, one array per column; returns the ids it inserted.
    pub(super) insert_sagas: String,
    /// Updates sagas' states, one array per column; a saga that ends loses its lease.
    pub(super) update_sagas: String,
    /// Appends history entries: arrays of sagas, positions and events.
    pub(super) append_history: String,
}

impl Sql {
    pub(super) fn new(schema: &str) -> Self {
        let sagas = format!("{schema}.sagas");
        let history = format!("{schema}.saga_history");
        Sql {
            schema: schema.to_owned(),
            lock_sagas: format!(
                "SELECT id, token, owner, events, state FROM {sagas}
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ),
            insert_sagas: format!(
                "INSERT INTO {sagas} (id, saga_type, steps, status, status_name, terminal, state,
                                      context, idempotency_key, events, token, owner,
                                      lease_until, wake_at, created_at, updated_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                      $5::text[], $6::bool[], $7::text[], $8::bytea[],
                                      $9::text[], $10::bigint[], $11::bigint[], $12::text[],
                                      $13::bigint[], $14::bigint[], $15::bigint[],
                                      $16::bigint[])
                 ON CONFLICT DO NOTHING RETURNING id"
            ),
            update_sagas: format!(
                "UPDATE {sagas} AS s SET state = u.state, status = u.status,
                     status_name = u.status_name, terminal = u.terminal,
                     context = coalesce(u.context, s.context), events = u.events,
                     wake_at = u.wake_at, updated_at = u.updated_at,
                     owner = CASE WHEN u.terminal THEN NULL ELSE s.owner END,
                     lease_until = CASE WHEN u.terminal THEN NULL ELSE s.lease_until END
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[],
                             $6::bytea[], $7::bigint[], $8::bigint[], $9::bigint[])
                      AS u(id, state, status, status_name, terminal, context, events, wake_at,
                           updated_at)
                 WHERE s.id = u.id"
            ),
            append_history: format!(
                "INSERT INTO {history} (saga, n, event)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])"
            ),
            sagas,
            history,
        }
    }
}

/// `query` prepared on `client`'s connection, once per connection (each statement otherwise
/// costs a round trip to parse it before the one that runs it).
pub(super) async fn prepared(
    client: &impl deadpool_postgres::GenericClient,
    query: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    client.prepare_cached(query).await.map_err(pg_error)
}

pub(super) fn now() -> i64 {
    millis(SystemTime::now())
}

pub(super) fn expiry(duration: Duration) -> i64 {
    now().saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

/// Records a new saga with its first writes on its own, or returns the one with its id or key.
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
    let mut row = NewRows::default();
    row.push(saga, writes)?;
    let (version, owner) = row.pushed(0);
    let owner = owner.map(str::to_owned);
    let tx = client.transaction().await.map_err(pg_error)?;
    if let Some(created) = row.insert(&tx, sql).await?.pop().flatten() {
        tx.commit().await.map_err(pg_error)?;
        return Ok(created);
    }
    // Its id or key is taken (perhaps by a concurrent start): that saga is the answer.
    drop(tx);
    let row = client
        .query_opt(
            &format!(
                "SELECT {RECORD_COLUMNS} FROM {} WHERE id = $1 OR idempotency_key = $2",
                sql.sagas
            ),
            &[&saga.id.to_string(), &saga.idempotency_key],
        )
        .await
        .map_err(pg_error)?
        .ok_or_else(|| StoreError::new(StoreErrorKind::Conflict, "saga vanished during create"))?;
    let existing = record(&row)
        .map_err(|corrupt| StoreError::new(StoreErrorKind::Corrupt, corrupt.message))?;
    let ours = retried
        && existing.id == saga.id
        && existing.version == version
        && existing.lease.as_ref().map(|l| &*l.owner) == owner.as_deref();
    if ours {
        return Ok(Created::New {
            version: existing.version,
            lease: existing.lease,
        });
    }
    Ok(Created::Existing(Box::new(existing)))
}

/// A row a write locked: its fence, version and state.
pub(super) struct Locked {
    token: Option<u64>,
    pub(super) events: i64,
    state: String,
}

impl Locked {
    /// Its state, if `fence` holds (see [`check_fence`]).
    pub(super) fn fenced(&self, id: SagaId, fence: Fence) -> Result<SagaState, StoreError> {
        let state = self.state(id)?;
        let version = u64::try_from(self.events).unwrap_or(0);
        check_fence(id, fence, self.token, &state.status, version)?;
        Ok(state)
    }

    fn state(&self, id: SagaId) -> Result<SagaState, StoreError> {
        serde_json::from_str(&self.state).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("saga {id}: bad state: {e}"),
            )
        })
    }
}

/// Locks the rows of `ids` (those that exist), in id order.
pub(super) async fn lock(
    client: &impl deadpool_postgres::GenericClient,
    sql: &Sql,
    ids: &[String],
) -> Result<HashMap<String, Locked>, StoreError> {
    let statement = prepared(client, &sql.lock_sagas).await?;
    let rows = client.query(&statement, &[&ids]).await.map_err(pg_error)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let locked = Locked {
                token: row
                    .get::<_, Option<String>>(2)
                    .map(|_| u64::try_from(row.get::<_, i64>(1)).unwrap_or(0)),
                events: row.get(3),
                state: row.get(4),
            };
            (row.get(0), locked)
        })
        .collect())
}

/// Locks saga `id`'s row.
async fn lock_one(
    client: &impl deadpool_postgres::GenericClient,
    sql: &Sql,
    id: SagaId,
) -> Result<Locked, StoreError> {
    let text_id = id.to_string();
    lock(client, sql, std::slice::from_ref(&text_id))
        .await?
        .remove(&text_id)
        .ok_or_else(|| StoreError::not_found(id))
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
    // Rows another transaction has locked are skipped, not waited for: concurrent workers take
    // different sagas. `taken`: whether a worker held it (a takeover).
    let take = prepared(
        &tx,
        &format!(
            "WITH due AS (
                 SELECT id AS due_id, owner IS NOT NULL AS taken FROM {sagas} WHERE NOT terminal
                   AND (((owner IS NULL OR lease_until <= $1)
                         AND (wake_at IS NULL OR wake_at <= $1 OR $7::text IS NOT NULL))
                        OR ($2::text IS NOT NULL AND owner <> $3 AND starts_with(owner, $2)))
                   AND ($4::text[] IS NULL OR saga_type = ANY($4))
                   AND ($7::text IS NULL OR id = $7)
                 ORDER BY seq LIMIT $5 FOR UPDATE SKIP LOCKED)
             UPDATE {sagas} AS s SET owner = $3, token = token + 1, lease_until = $6,
                 wake_at = NULL
             FROM due WHERE s.id = due.due_id
             RETURNING {RECORD_COLUMNS}, due.taken, s.seq",
            sagas = sql.sagas
        ),
    )
    .await?;
    let mut rows = tx
        .query(
            &take,
            &[
                &now,
                &prefix,
                &owner,
                &request.types,
                &limit,
                &expiry(request.lease.duration),
                &request.only.map(|id| id.to_string()),
            ],
        )
        .await
        .map_err(pg_error)?;
    rows.sort_by_key(|row| row.get::<_, i64>(RECORD_COLUMN_COUNT + 1));
    let mut records = Vec::with_capacity(rows.len());
    let (mut recovered, mut states) = (Vec::new(), Vec::new());
    for row in &rows {
        let mut taken = record(row);
        if let (Ok(record), true) = (&mut taken, row.get::<_, bool>(RECORD_COLUMN_COUNT)) {
            // Taken from a worker that held it: one more recovery without progress.
            record.state.recovery_attempts += 1;
            recovered.push(record.id.to_string());
            states.push(json::state_string(&record.state).map_err(|e| json_error("state", e))?);
        }
        records.push(taken);
    }
    if !recovered.is_empty() {
        let statement = prepared(
            &tx,
            &format!(
                "UPDATE {} AS s SET state = u.state
                 FROM unnest($1::text[], $2::text[]) AS u(id, state) WHERE s.id = u.id",
                sql.sagas
            ),
        )
        .await?;
        tx.execute(&statement, &[&recovered, &states])
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(records)
}

/// Extends `owner`'s leases on those of `ids` it holds.
pub(super) async fn renew(
    client: &impl deadpool_postgres::GenericClient,
    sql: &Sql,
    owner: &str,
    ids: &[String],
    duration: Duration,
) -> Result<Vec<Held>, StoreError> {
    // Locked in id order, as writes lock them, so that a renewal and a write never deadlock.
    let statement = prepared(
        client,
        &format!(
            "WITH held AS (
                 SELECT id FROM {sagas} WHERE NOT terminal AND owner = $1 AND id = ANY($3)
                 ORDER BY id FOR UPDATE)
             UPDATE {sagas} AS s SET lease_until = $2 FROM held
             WHERE s.id = held.id AND NOT s.terminal AND s.owner = $1
             RETURNING s.id, s.token, s.cancel_requested",
            sagas = sql.sagas
        ),
    )
    .await?;
    let rows = client
        .query(&statement, &[&owner, &expiry(duration), &ids])
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
    lock_one(&tx, sql, id).await?.fenced(id, fence)?;
    let statement = prepared(
        &tx,
        &format!(
            "UPDATE {} SET owner = NULL, lease_until = NULL, wake_at = $2 WHERE id = $1",
            sql.sagas
        ),
    )
    .await?;
    tx.execute(&statement, &[&id.to_string(), &wake_at.map(millis)])
        .await
        .map_err(pg_error)?;
    if wake_at.is_none() {
        // Due at once, for any worker.
        listen::notify(&tx, sql).await?;
    }
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
    let locked = lock_one(&tx, sql, id).await?;
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
            // Due at once if no worker holds it.
            listen::notify(&tx, sql).await?;
        }
        Admission::Reopen(write) => {
            // Unfenced: an ended saga has no holder. Then the caller's lease, if it asked.
            let mut reopened = Updates::default();
            reopened.push(
                &text_id,
                record.state.clone(),
                locked.events,
                std::slice::from_ref(&*write),
            )?;
            reopened.apply(&tx, sql).await?;
            tx.execute(
                &format!("UPDATE {} SET wake_at = NULL WHERE id = $1", sql.sagas),
                &[&text_id],
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
            } else {
                listen::notify(&tx, sql).await?;
            }
        }
    }
    let record = load_decoded(&*tx, sql, id).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(Ok(record))
}
