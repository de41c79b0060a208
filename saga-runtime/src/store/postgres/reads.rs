//! Reads on PostgreSQL: a saga's record, its history, the next wake time, and the query side.

use std::time::SystemTime;

use tokio_postgres::{GenericClient, Row};

use super::rows::{now, pg_error, Sql};
use crate::event::SagaEvent;
use crate::store::encoding::{decode_event, millis, time};
use crate::store::{
    CorruptRecord, Fence, Lease, SagaQuery, SagaRecord, SagaSummary, StatusCount, StoreError,
    StoreErrorKind, StoredContext,
};
use crate::{SagaId, SagaStatus};

/// The columns [`record`] reads, in its order.
pub(super) const RECORD_COLUMNS: &str =
    "id, saga_type, steps, state, context, idempotency_key, events, \
     token, owner, lease_until, created_at, updated_at, cancel_requested";

/// How many columns [`RECORD_COLUMNS`] names.
pub(super) const RECORD_COLUMN_COUNT: usize = 13;

/// Reads one record; `Err(CorruptRecord)` when its stored fields do not decode.
pub(super) fn record(row: &Row) -> Result<SagaRecord, CorruptRecord> {
    let id: String = row.get(0);
    let saga_type: String = row.get(1);
    let version = u64::try_from(row.get::<_, i64>(6)).unwrap_or(0);
    let owner: Option<String> = row.get(8);
    let token = u64::try_from(row.get::<_, i64>(7)).unwrap_or(0);
    let lease = owner.map(|owner| Lease {
        owner: owner.into(),
        token,
        expires_at: time(row.get::<_, Option<i64>>(9).unwrap_or(0)),
    });
    let decode = || -> Result<SagaRecord, String> {
        Ok(SagaRecord {
            id: id.parse().map_err(|e| format!("bad id: {e}"))?,
            saga_type: saga_type.clone(),
            steps: serde_json::from_str(row.get(2)).map_err(|e| format!("bad step list: {e}"))?,
            state: serde_json::from_str(row.get(3)).map_err(|e| format!("bad state: {e}"))?,
            context: StoredContext::json(row.get::<_, Vec<u8>>(4)),
            idempotency_key: row.get(5),
            version,
            lease: lease.clone(),
            created_at: time(row.get(10)),
            updated_at: time(row.get(11)),
            cancel_requested: row.get(12),
        })
    };
    decode().map_err(|message| CorruptRecord {
        id: id.clone(),
        saga_type: saga_type.clone(),
        message,
        fence: lease.as_ref().map(|l| Fence {
            token: l.token,
            version,
        }),
    })
}

/// Reads saga `id`'s record.
pub(super) async fn load(
    client: &impl GenericClient,
    sql: &Sql,
    id: SagaId,
) -> Result<Option<Result<SagaRecord, CorruptRecord>>, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {RECORD_COLUMNS} FROM {} WHERE id = $1", sql.sagas),
            &[&id.to_string()],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.as_ref().map(record))
}

/// Loads a record that must decode.
pub(super) async fn load_decoded(
    client: &impl GenericClient,
    sql: &Sql,
    id: SagaId,
) -> Result<SagaRecord, StoreError> {
    load(client, sql, id)
        .await?
        .ok_or_else(|| StoreError::not_found(id))?
        .map_err(|corrupt| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                format!("saga {id}: {}", corrupt.message),
            )
        })
}

/// The earliest wake time after now of a saga of these types no live lease holds.
pub(super) async fn next_wake(
    client: &impl GenericClient,
    sql: &Sql,
    types: Option<Vec<String>>,
) -> Result<Option<SystemTime>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT wake_at FROM {} WHERE NOT terminal AND wake_at > $1
                   AND (owner IS NULL OR lease_until <= $1)
                   AND ($2::text[] IS NULL OR saga_type = ANY($2))
                 ORDER BY wake_at LIMIT 1",
                sql.sagas
            ),
            &[&now(), &types],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.map(|row| time(row.get(0))))
}

/// Up to `limit` history entries of saga `id` from entry `from`.
pub(super) async fn history(
    client: &impl GenericClient,
    sql: &Sql,
    id: SagaId,
    from: u64,
    limit: usize,
) -> Result<Option<Vec<SagaEvent>>, StoreError> {
    let text_id = id.to_string();
    let saga = client
        .query_opt(
            &format!("SELECT saga_type FROM {} WHERE id = $1", sql.sagas),
            &[&text_id],
        )
        .await
        .map_err(pg_error)?;
    let Some(saga) = saga else {
        return Ok(None);
    };
    let saga_type: String = saga.get(0);
    let rows = client
        .query(
            &format!(
                "SELECT event FROM {} WHERE saga = $1 AND n >= $2 ORDER BY n LIMIT $3",
                sql.history
            ),
            &[
                &text_id,
                &i64::try_from(from).unwrap_or(i64::MAX),
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|row| {
            decode_event(row.get(0), id, &saga_type).map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("saga {id}: a history entry does not decode: {e}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The sagas `query` selects.
pub(super) async fn list(
    client: &impl GenericClient,
    sql: &Sql,
    query: &SagaQuery,
) -> Result<Vec<SagaSummary>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT id, saga_type, status, idempotency_key, owner, created_at, updated_at,
                        wake_at
                 FROM {} WHERE ($1::text IS NULL OR status_name = $1)
                   AND ($2::text IS NULL OR saga_type = $2)
                   AND ($3::bigint IS NULL OR created_at >= $3)
                   AND ($4::bigint IS NULL OR created_at < $4)
                   AND ($5::text IS NULL OR idempotency_key = $5)
                   AND ($6::text IS NULL OR id > $6)
                   AND ($8::bigint IS NULL OR (NOT terminal AND wake_at > $8))
                 ORDER BY id LIMIT $7",
                sql.sagas
            ),
            &[
                &query.status,
                &query.saga_type,
                &query.created_after.map(millis),
                &query.created_before.map(millis),
                &query.idempotency_key,
                &query.after.map(|id| id.to_string()),
                &i64::try_from(query.limit).unwrap_or(i64::MAX),
                &query.waiting.then(|| millis(SystemTime::now())),
            ],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|row| {
            let id: String = row.get(0);
            let status: SagaStatus<usize> = serde_json::from_str(row.get(2)).map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("saga {id}: bad status: {e}"),
                )
            })?;
            Ok(SagaSummary {
                id: id.parse().map_err(|e| {
                    StoreError::new(StoreErrorKind::Corrupt, format!("bad id {id}: {e}"))
                })?,
                saga_type: row.get(1),
                status,
                idempotency_key: row.get(3),
                owner: row.get(4),
                wake_at: row.get::<_, Option<i64>>(7).map(time),
                created_at: time(row.get(5)),
                updated_at: time(row.get(6)),
            })
        })
        .collect()
}

/// Sagas by type and status.
pub(super) async fn counts(
    client: &impl GenericClient,
    sql: &Sql,
) -> Result<Vec<StatusCount>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT saga_type, status_name, count(*) FROM {}
                 GROUP BY saga_type, status_name ORDER BY saga_type, status_name",
                sql.sagas
            ),
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|row| StatusCount {
            saga_type: row.get(0),
            status: row.get(1),
            count: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
        })
        .collect())
}
