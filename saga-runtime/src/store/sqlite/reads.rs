//! Reads: a saga's record and its history, on the reader connection (WAL lets it read while the
//! writer writes).

use rusqlite::{Connection, OptionalExtension};

use super::codec::{row_to_record, store_error, unreadable, RECORD_COLUMNS};
use super::schema::history_key;
use crate::event::SagaEvent;
use crate::store::{CorruptRecord, SagaRecord, StoreError};

/// Reads one record; `Err(CorruptRecord)` when its stored fields do not decode.
pub(super) fn load_record(
    conn: &Connection,
    id: &str,
) -> Result<Option<Result<SagaRecord, CorruptRecord>>, StoreError> {
    conn.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM sagas WHERE id = ?1"))
        .and_then(|mut statement| statement.query_row([id], row_to_record).optional())
        .map_err(store_error)
}

/// Up to `limit` history entries of saga `id` from entry `from`; `None` for an unknown saga.
pub(super) fn history(
    conn: &Connection,
    id: &str,
    from: u64,
    limit: usize,
) -> Result<Option<Vec<SagaEvent>>, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sagas WHERE id = ?1")
        .and_then(|mut statement| statement.query_row([id], |row| row.get(0)).optional())
        .map_err(store_error)?;
    let Some(seq) = seq else {
        return Ok(None);
    };
    let mut statement = conn
        .prepare_cached(
            "SELECT event FROM saga_history WHERE key BETWEEN ?1 AND ?2 ORDER BY key LIMIT ?3",
        )
        .map_err(store_error)?;
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    let (first, last) = (
        history_key(seq, 0).saturating_add(from),
        history_key(seq + 1, 0) - 1,
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement
        .query_map(rusqlite::params![first, last, limit], |row| {
            row.get::<_, String>(0)
        })
        .map_err(store_error)?;
    let mut events = Vec::new();
    for row in rows {
        let json = row.map_err(store_error)?;
        events.push(
            serde_json::from_str(&json)
                .map_err(|e| unreadable(format!("saga {id}: unreadable history entry: {e}")))?,
        );
    }
    Ok(Some(events))
}
