//! A saga's history as SQLite keeps it (since schema version 7): the newest entries in the
//! saga's row, appended by the write that changes the row anyway; older ones, every
//! [`ROW_HISTORY_ENTRIES`], a row each in `saga_history`.

use rusqlite::{params, Connection, OptionalExtension};

use super::codec::{store_error, unreadable};
use super::schema::{history_key, HISTORY_POSITION_BITS, ROW_HISTORY_ENTRIES};
use super::writer::execute_cached;
use crate::event::SagaEvent;
use crate::store::encoding::{encode_event_into, EntryForm};
use crate::store::{StoreError, StoreErrorKind};

/// Appends `event` to `text` as a row keeps its entries: encoded, in the short form where its
/// kind has one (which every library that opens a schema version 8 file reads), then a newline
/// (an encoded entry has none: JSON escapes it within strings and writes none between tokens).
pub(super) fn push(text: &mut Vec<u8>, event: &SagaEvent) -> Result<(), StoreError> {
    encode_event_into(text, event, EntryForm::Short)?;
    text.push(b'\n');
    Ok(())
}

/// The entries of a row's history text (as [`push`] wrote them).
pub(super) fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.split_terminator('\n')
}

/// Refuses a write that would give saga `id` entries `from..to`, past the most one saga can keep
/// (positions are [`HISTORY_POSITION_BITS`] bits of a history key).
pub(super) fn room(id: &str, (from, to): (i64, i64)) -> Result<(), StoreError> {
    let most = 1 << HISTORY_POSITION_BITS;
    match to > most {
        true => Err(StoreError::new(
            StoreErrorKind::Invalid,
            format!(
                "saga {id} has {} history entries, the most one saga can keep",
                from.max(most)
            ),
        )),
        false => Ok(()),
    }
}

/// After a write took saga `id` (whose `seq` is `seq`) from `from` entries to `to`: when that
/// reached or passed a multiple of [`ROW_HISTORY_ENTRIES`], the row's entries move to
/// `saga_history`, in the same transaction. A row whose entries do not add up to its count of
/// entries is refused (the write with it), never moved half.
pub(super) fn bound(
    conn: &Connection,
    (id, seq): (&str, i64),
    (from, to): (i64, i64),
) -> Result<(), StoreError> {
    if to / ROW_HISTORY_ENTRIES == from / ROW_HISTORY_ENTRIES {
        return Ok(());
    }
    let row: Option<(String, i64, i64)> = conn
        .prepare_cached("SELECT history, history_from, events FROM sagas WHERE seq = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([seq], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()
        })
        .map_err(store_error)?;
    let Some((text, first, events)) = row else {
        return Ok(());
    };
    let count = entries(&text).count() as i64;
    if first + count != events {
        return Err(unreadable(format!(
            "saga {id}: its row holds {count} history entries from entry {first}, but the saga \
             has {events}"
        )));
    }
    (first..)
        .zip(entries(&text))
        .try_for_each(|(n, entry)| insert(conn, seq, n, entry))?;
    execute_cached(
        conn,
        "UPDATE sagas SET history = '', history_from = ?2 WHERE seq = ?1",
        params![seq, events],
    )
    .map(drop)
}

/// Writes entry `n` of the history of the saga whose `seq` is `saga` to `saga_history` (within
/// the positions a key holds: [`room`] refused any write past them).
fn insert(conn: &Connection, saga: i64, n: i64, event: &str) -> Result<(), StoreError> {
    execute_cached(
        conn,
        "INSERT INTO saga_history (key, saga, n, event) VALUES (?1, ?2, ?3, ?4)",
        params![history_key(saga, n), saga, n, event],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attempt, create};
    use super::super::SqliteStore;
    use super::*;
    use crate::event::SagaEventKind;
    use crate::store::SagaStore;
    use crate::SagaId;

    #[tokio::test]
    async fn a_long_history_moves_out_of_the_row_and_reads_back_whole_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).unwrap();
        let id = SagaId::new();
        let mut fence = create(&store, id).await;
        for n in 1..=60 {
            fence.version = store
                .write(id, fence, &mut vec![attempt(id, n)])
                .await
                .unwrap();
        }
        let (in_row, from, rows): (String, i64, i64) = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT history, history_from, (SELECT count(*) FROM saga_history) FROM sagas",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(from, 48, "moved out at 16, 32 and 48 entries");
        assert_eq!(rows, from, "the older entries are rows");
        assert_eq!(entries(&in_row).count(), 13, "61 entries in all");
        let attempts = |events: Vec<crate::SagaEvent>| -> Vec<u32> {
            events
                .into_iter()
                .map(|e| match e.kind {
                    SagaEventKind::SagaStarted { .. } => 0,
                    SagaEventKind::StepStarted { attempt, .. } => attempt,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let whole = attempts(store.history(id, 0, 1000).await.unwrap().unwrap());
        assert_eq!(whole, (0..=60).collect::<Vec<_>>());
        // Pages across the boundary between rows and the row's own entries.
        for start in [0, 5, from as u64 - 3, from as u64, 58, 61, 70] {
            let page = attempts(store.history(id, start, 7).await.unwrap().unwrap());
            let expected: Vec<u32> = (start as u32..=60).take(7).collect();
            assert_eq!(page, expected, "from {start}");
        }
    }

    #[test]
    fn entries_read_back_as_written() {
        let id = SagaId::new();
        let failed = |error: &'static str| {
            super::super::tests::event(
                id,
                SagaEventKind::StepFailed {
                    step: "charge".into(),
                    attempt: 1,
                    error: crate::StepError::permanent(error),
                },
            )
        };
        let written = [failed("one"), failed("two\nlines")];
        let mut text = Vec::new();
        for event in &written {
            push(&mut text, event).unwrap();
        }
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.matches('\n').count(), 2, "{text}");
        let read: Vec<_> = entries(&text)
            .map(|json| crate::store::encoding::decode_event(json, id, "OrderSaga").unwrap())
            .collect();
        assert_eq!(read, written);
        assert_eq!(entries("").count(), 0);
    }
}
