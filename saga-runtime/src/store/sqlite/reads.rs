//! Reads: a saga's record and its history, on the reader connection (WAL lets it read while the
//! writer writes).

use std::time::SystemTime;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::codec::{
    decode_event, millis, row_to_record, store_error, time, unreadable, RECORD_COLUMNS,
};
use super::schema::history_key;
use crate::event::SagaEvent;
use crate::store::{CorruptRecord, SagaQuery, SagaRecord, SagaSummary, StatusCount, StoreError};
use crate::{SagaId, SagaShape};

/// Reads one record; `Err(CorruptRecord)` when its stored fields do not decode.
pub(super) fn load_record(
    conn: &Connection,
    id: &str,
) -> Result<Option<Result<SagaRecord, CorruptRecord>>, StoreError> {
    conn.prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM sagas WHERE id = ?1"))
        .and_then(|mut statement| statement.query_row([id], row_to_record).optional())
        .map_err(store_error)
}

/// The earliest wake time after now of a saga of these types that no live lease holds.
pub(super) fn next_wake(
    conn: &Connection,
    types: Option<&[String]>,
) -> Result<Option<SystemTime>, StoreError> {
    let types = types
        .map(serde_json::to_string)
        .transpose()
        .map_err(store_error)?;
    let now = millis(SystemTime::now());
    // In wake order through the index, stopping at the first that qualifies.
    conn.prepare_cached(
        "SELECT wake_at FROM sagas
         WHERE terminal = 0 AND wake_at > ?1 AND (owner IS NULL OR lease_until <= ?1)
           AND (?2 IS NULL OR saga_type IN (SELECT value FROM json_each(?2)))
         ORDER BY wake_at LIMIT 1",
    )
    .and_then(|mut statement| {
        statement
            .query_row(rusqlite::params![now, types], |row| row.get::<_, i64>(0))
            .optional()
    })
    .map(|wake| wake.map(super::codec::time))
    .map_err(store_error)
}

/// Up to `limit` history entries of saga `id` from entry `from`; `None` for an unknown saga.
/// The older entries are rows of `saga_history`, the newest in the saga's row (since version
/// 7; a read-only store reads older versions, whose entries are all rows). One snapshot for the
/// version, the row and the rows: the writer may move entries out of the row meanwhile, or
/// another process migrate the file.
pub(super) fn history(
    conn: &Connection,
    id: SagaId,
    from: u64,
    limit: usize,
) -> Result<Option<Vec<SagaEvent>>, StoreError> {
    conn.execute_batch("BEGIN").map_err(store_error)?;
    let read = history_snapshot(conn, id, from, limit);
    let ended = conn.execute_batch("COMMIT").map_err(store_error);
    let read = read?;
    ended?;
    Ok(read)
}

fn history_snapshot(
    conn: &Connection,
    id: SagaId,
    from: u64,
    limit: usize,
) -> Result<Option<Vec<SagaEvent>>, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(store_error)?;
    let sql = match version >= 7 {
        true => "SELECT seq, saga_type, history_from, history FROM sagas WHERE id = ?1",
        false => "SELECT seq, saga_type, events, '' FROM sagas WHERE id = ?1",
    };
    let saga: Option<(i64, String, i64, String)> = conn
        .prepare_cached(sql)
        .and_then(|mut statement| {
            statement
                .query_row([id.to_string()], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .optional()
        })
        .map_err(store_error)?;
    let Some((seq, saga_type, in_row_from, in_row)) = saga else {
        return Ok(None);
    };
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    let mut statement = conn
        .prepare_cached(
            "SELECT event FROM saga_history WHERE key BETWEEN ?1 AND ?2 ORDER BY key LIMIT ?3",
        )
        .map_err(store_error)?;
    // The entries before the row's own.
    let (first, last) = (
        history_key(seq, 0).saturating_add(from),
        history_key(seq, 0).saturating_add(in_row_from) - 1,
    );
    let rows = statement
        .query_map(
            rusqlite::params![first, last, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| row.get::<_, String>(0),
        )
        .map_err(store_error)?
        .collect::<Result<Vec<String>, _>>()
        .map_err(store_error)?;
    let skipped = usize::try_from(from.saturating_sub(in_row_from).max(0)).unwrap_or(usize::MAX);
    let newest = super::history::entries(&in_row)
        .skip(skipped)
        .take(limit.saturating_sub(rows.len()));
    let mut events = Vec::new();
    for json in rows.iter().map(String::as_str).chain(newest) {
        events.push(
            decode_event(json, id, &saga_type)
                .map_err(|e| unreadable(format!("saga {id}: unreadable history entry: {e}")))?,
        );
    }
    Ok(Some(events))
}

/// The sagas `query` selects, in id order.
pub(super) fn list(conn: &Connection, query: &SagaQuery) -> Result<Vec<SagaSummary>, StoreError> {
    let (sql, values) = list_sql(query);
    let mut statement = conn.prepare_cached(&sql).map_err(store_error)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, Option<i64>>(7)?,
            ))
        })
        .map_err(store_error)?;
    let mut page = Vec::new();
    for row in rows {
        let (id, saga_type, status, idempotency_key, owner, created, updated, wake) =
            row.map_err(store_error)?;
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            unreadable(format!("saga {id}: bad {what}: {e}"))
        };
        page.push(SagaSummary {
            id: id.parse().map_err(|e| bad("id", &e))?,
            saga_type,
            status: serde_json::from_str(&status).map_err(|e| bad("status", &e))?,
            idempotency_key,
            owner,
            wake_at: wake.map(time),
            created_at: time(created),
            updated_at: time(updated),
        });
    }
    Ok(page)
}

/// The statement of a listing and its parameters. It names only the filters given, so that
/// SQLite can use an index for them: a status is looked up among the ended sagas
/// (`sagas_ended`) or the unfinished ones (`sagas_unfinished`), whichever holds it.
fn list_sql(query: &SagaQuery) -> (String, Vec<Value>) {
    let mut sql = String::from(
        "SELECT id, saga_type, status, idempotency_key, owner, created_at, updated_at, wake_at
         FROM sagas WHERE 1",
    );
    // Written in the statement, not bound: SQLite picks a partial index only for a literal.
    if let Some(status) = &query.status {
        let terminal = !STILL_RUNNING.contains(&status.as_str());
        sql.push_str(if terminal {
            " AND terminal = 1"
        } else {
            " AND terminal = 0"
        });
    }
    if query.waiting {
        sql.push_str(" AND terminal = 0");
    }
    // Each filter given: its condition, with its value bound to the next parameter.
    let mut values: Vec<Value> = Vec::new();
    let mut given = |condition: &str, value: Option<Value>| {
        if let Some(value) = value {
            values.push(value);
            sql.push_str(&format!(" AND {condition}?{}", values.len()));
        }
    };
    let text = |t: &Option<String>| t.clone().map(Value::Text);
    let at = |t: Option<SystemTime>| t.map(|t| Value::Integer(millis(t)));
    given("json_extract(status, '$.status') = ", text(&query.status));
    given("saga_type = ", text(&query.saga_type));
    given("created_at >= ", at(query.created_after));
    given("created_at < ", at(query.created_before));
    given("idempotency_key = ", text(&query.idempotency_key));
    given("id > ", query.after.map(|id| Value::Text(id.to_string())));
    if query.waiting {
        given("wake_at > ", at(Some(SystemTime::now())));
    }
    values.push(Value::Integer(
        i64::try_from(query.limit).unwrap_or(i64::MAX),
    ));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", values.len()));
    (sql, values)
}

/// The statuses of sagas still under way (`terminal = 0`).
const STILL_RUNNING: [&str; 3] = ["pending", "running", "compensating"];

/// The counts' statement (see [`counts`]).
const COUNTS: &str = "SELECT saga_type, coalesce(json_extract(status, '$.status'), '?'), count(*)
     FROM sagas WHERE terminal = 1 GROUP BY json_extract(status, '$.status'), saga_type
     UNION ALL
     SELECT saga_type, coalesce(json_extract(status, '$.status'), '?'), count(*)
     FROM sagas WHERE terminal = 0 GROUP BY json_extract(status, '$.status'), saga_type";

/// Sagas by type and status: the ended ones counted through `sagas_ended`, the others through
/// `sagas_unfinished`, so that no row is read.
pub(super) fn counts(conn: &Connection) -> Result<Vec<StatusCount>, StoreError> {
    let mut statement = conn.prepare_cached(COUNTS).map_err(store_error)?;
    let rows = statement
        .query_map([], |row| {
            Ok(StatusCount {
                saga_type: row.get(0)?,
                status: row.get(1)?,
                count: row.get::<_, i64>(2)? as u64,
            })
        })
        .map_err(store_error)?;
    let mut counts: Vec<StatusCount> = rows.collect::<Result<_, _>>().map_err(store_error)?;
    counts.sort_by(|a, b| (&a.saga_type, &a.status).cmp(&(&b.saga_type, &b.status)));
    Ok(counts)
}

/// The saga type shapes recorded, by name, newest first within a name; none in a version 4
/// database (read-only stores read those), which had no such table.
pub(super) fn saga_types(conn: &Connection) -> Result<Vec<SagaShape>, StoreError> {
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'saga_types'",
            [],
            |row| row.get(0),
        )
        .map_err(store_error)?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut statement = conn
        .prepare_cached(
            "SELECT name, shape FROM saga_types ORDER BY name, recorded_at DESC, rowid DESC",
        )
        .map_err(store_error)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(store_error)?;
    rows.map(|row| {
        let (name, shape) = row.map_err(store_error)?;
        serde_json::from_str(&shape)
            .map_err(|e| unreadable(format!("the recorded shape of saga type `{name}`: {e}")))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    /// What SQLite plans for a statement: the lines of `EXPLAIN QUERY PLAN`.
    fn plan(conn: &Connection, sql: &str, values: &[Value]) -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let lines: Vec<String> = statement
            .query_map(rusqlite::params_from_iter(values), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        lines.join("; ")
    }

    #[test]
    fn the_query_side_reads_indexes_not_every_row() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::schema::SCHEMA).unwrap();
        for (status, index) in [
            ("parked", "sagas_ended"),
            ("completed", "sagas_ended"),
            ("running", "sagas_unfinished"),
        ] {
            let (sql, values) = list_sql(&SagaQuery::new().status(status).limit(10));
            let planned = plan(&conn, &sql, &values);
            assert!(planned.contains(index), "{status}: {planned}");
        }
        let (sql, values) = list_sql(&SagaQuery::new().waiting());
        let planned = plan(&conn, &sql, &values);
        assert!(
            planned.contains("sagas_waking") || planned.contains("sagas_unfinished"),
            "{planned}"
        );
        let counts = plan(&conn, COUNTS, &[]);
        assert!(
            counts.contains("sagas_ended") && counts.contains("sagas_unfinished"),
            "{counts}"
        );
    }
}
