//! How a saga is encoded in its row, and decoded back; SQLite errors as store errors.

use std::sync::Arc;
use std::time::SystemTime;

use rusqlite::types::ValueRef;
use rusqlite::ErrorCode;

use crate::event::SagaEvent;
pub(super) use crate::store::encoding::{decode_event, json, millis, time};

use crate::machine::{Change, SagaState, Write};
use crate::store::{
    CorruptRecord, Fence, Lease, NewSaga, SagaRecord, StoreError, StoreErrorKind, StoredContext,
};
use crate::SagaStatus;

/// A SQLite error as a store error of the matching kind.
pub(super) fn store_error(error: impl Into<SqliteError>) -> StoreError {
    let SqliteError(error) = error.into();
    let kind = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreErrorKind::Busy,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreErrorKind::Corrupt,
            ErrorCode::ConstraintViolation | ErrorCode::TooBig => StoreErrorKind::Invalid,
            _ => StoreErrorKind::Unavailable,
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, error.to_string()).with_source(error)
}

/// Anything [`store_error`] takes: a rusqlite error, or a JSON one (kept as a conversion
/// failure).
pub(super) struct SqliteError(rusqlite::Error);

impl From<rusqlite::Error> for SqliteError {
    fn from(error: rusqlite::Error) -> Self {
        SqliteError(error)
    }
}

impl From<serde_json::Error> for SqliteError {
    fn from(error: serde_json::Error) -> Self {
        SqliteError(rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
    }
}

/// Stored data that does not decode.
pub(super) fn unreadable(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}

/// Writes with their JSON already encoded, on the caller's thread rather than the writer's: what
/// each changes, and their history entries as the saga's row keeps them.
pub(super) struct Encoded {
    pub(super) writes: Vec<EncodedWrite>,
    pub(super) entries: String,
}

/// A write with its JSON already encoded (its history entry in [`Encoded::entries`]).
pub(super) struct EncodedWrite {
    pub(super) at: SystemTime,
    pub(super) status: Option<SagaStatus<usize>>,
    pub(super) change: Change,
    pub(super) context: Option<Arc<[u8]>>,
}

impl EncodedWrite {
    /// Applies it to a state, as [`SagaState::apply`] would the write it came from.
    pub(super) fn apply_to(&self, state: &mut SagaState) {
        state.apply_parts(self.status.as_ref(), &self.change, self.at);
    }
}

/// A saga's row as a request leaves it: its state, folded and encoded (on the caller's thread when
/// the caller knows the state it starts from, so that the writer thread only writes).
pub(super) struct Folded {
    pub(super) state: String,
    pub(super) status: String,
    pub(super) terminal: bool,
    pub(super) wake: Option<i64>,
}

/// A new saga as the writer inserts it, encoded on the caller's thread.
pub(super) struct Creating {
    pub(super) saga: NewSaga,
    pub(super) encoded: Encoded,
    pub(super) folded: Folded,
    /// Its context as JSON, unless one of its first writes commits one.
    pub(super) context: Option<Arc<[u8]>>,
    /// Its step names as JSON.
    pub(super) steps: String,
}

impl Creating {
    /// Encodes `saga` and its first writes, taking them out of the vector, and folds them into
    /// `state` (the saga's initial state).
    pub(super) fn new(
        saga: NewSaga,
        writes: &mut Vec<Write>,
        state: &mut SagaState,
    ) -> Result<Self, StoreError> {
        let encoded = encode(Some(&saga.started), writes)?;
        let folded = fold(state, &encoded.writes)?;
        let context = match encoded.writes.iter().any(|w| w.context.is_some()) {
            true => None,
            false => Some(context_json(&saga.context)?),
        };
        let steps = json::steps_string(&saga.steps).map_err(store_error)?;
        Ok(Creating {
            saga,
            encoded,
            folded,
            context,
            steps,
        })
    }
}

/// A context as the row keeps it.
fn context_json(context: &StoredContext) -> Result<Arc<[u8]>, StoreError> {
    context.to_json().map_err(|e| {
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("the context does not serialize: {e}"),
        )
    })
}

/// Applies `writes` to `state` (with [`SagaState::apply`]'s fold) and encodes what the row keeps.
pub(super) fn fold(state: &mut SagaState, writes: &[EncodedWrite]) -> Result<Folded, StoreError> {
    for write in writes {
        write.apply_to(state);
    }
    Ok(Folded {
        state: json::state_string(state).map_err(store_error)?,
        status: json::status_string(&state.status).map_err(store_error)?,
        terminal: state.status.is_terminal(),
        wake: state.wake_at().map(millis),
    })
}

/// Encodes `writes` for the writer thread, taking them out of the vector; a new saga's history
/// starts with its `started` event.
pub(super) fn encode(
    started: Option<&SagaEvent>,
    writes: &mut Vec<Write>,
) -> Result<Encoded, StoreError> {
    // Room for a few hundred bytes an entry: most are shorter, so the buffer grows seldom.
    let mut entries = Vec::with_capacity(256 * (writes.len() + usize::from(started.is_some())));
    if let Some(started) = started {
        super::history::push(&mut entries, started)?;
    }
    let writes = writes
        .drain(..)
        .map(|w| {
            super::history::push(&mut entries, &w.event)?;
            Ok(EncodedWrite {
                at: w.event.at,
                context: w.context.as_ref().map(context_json).transpose()?,
                status: w.status,
                change: w.change,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    // JSON is UTF-8, and so is a newline.
    let entries = String::from_utf8(entries).map_err(|e| unreadable(e.to_string()))?;
    Ok(Encoded { writes, entries })
}

/// The columns [`row_to_record`] reads, in its order.
pub(super) const RECORD_COLUMNS: &str = "id, saga_type, steps, state, context, idempotency_key, \
     events, token, owner, lease_until, created_at, updated_at, cancel_requested";

/// Reads one record; `Err(CorruptRecord)` when its stored fields do not decode.
pub(super) fn row_to_record(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<SagaRecord, CorruptRecord>> {
    // Any column may hold anything: a value of the wrong type is a corrupt record, never an
    // error that would stop the reading of the others.
    let text = |i: usize| -> Result<String, String> {
        match row.get_ref(i).map_err(|e| e.to_string())? {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|e| e.to_string()),
            other => Err(format!(
                "column {i} holds {:?}, not text",
                other.data_type()
            )),
        }
    };
    let optional_text = |i: usize| -> Result<Option<String>, String> {
        match row.get_ref(i).map_err(|e| e.to_string())? {
            ValueRef::Null => Ok(None),
            _ => text(i).map(Some),
        }
    };
    let integer = |i: usize| -> Result<i64, String> {
        match row.get_ref(i).map_err(|e| e.to_string())? {
            ValueRef::Integer(n) => Ok(n),
            other => Err(format!(
                "column {i} holds {:?}, not an integer",
                other.data_type()
            )),
        }
    };
    let id = text(0).unwrap_or_else(|_| "?".to_owned());
    let saga_type = text(1).unwrap_or_else(|_| "?".to_owned());
    let version = integer(6).ok().and_then(|v| u64::try_from(v).ok());
    let lease = || -> Result<Option<Lease>, String> {
        let owner = optional_text(8)?;
        Ok(match owner {
            None => None,
            Some(owner) => Some(Lease {
                owner: owner.into(),
                token: u64::try_from(integer(7)?).map_err(|e| e.to_string())?,
                expires_at: time(integer(9)?),
            }),
        })
    };
    let lease = lease();
    let decode = || -> Result<SagaRecord, String> {
        let context = match row.get_ref(4).map_err(|e| e.to_string())? {
            ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
            other => return Err(format!("the context holds {:?}", other.data_type())),
        };
        Ok(SagaRecord {
            id: id.parse().map_err(|e| format!("bad id: {e}"))?,
            saga_type: saga_type.clone(),
            steps: serde_json::from_str(&text(2)?).map_err(|e| format!("bad step list: {e}"))?,
            state: serde_json::from_str(&text(3)?).map_err(|e| format!("bad state: {e}"))?,
            context: StoredContext::json(context),
            idempotency_key: optional_text(5)?,
            version: version.ok_or("bad version")?,
            lease: lease.clone()?,
            created_at: time(integer(10)?),
            updated_at: time(integer(11)?),
            cancel_requested: integer(12)? != 0,
        })
    };
    Ok(decode().map_err(|message| CorruptRecord {
        id: id.clone(),
        saga_type,
        message,
        fence: match (&lease, version) {
            (Ok(Some(lease)), Some(version)) => Some(Fence {
                token: lease.token,
                version,
            }),
            _ => None,
        },
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::tests::new_saga;
    use super::super::SqliteStore;
    use super::*;
    use crate::store::SagaStore;
    use crate::SagaId;

    /// A context JSON cannot hold (a map keyed by pairs) is the caller's invalid request, named
    /// as such, and nothing is recorded.
    #[tokio::test]
    async fn a_context_that_does_not_serialize_is_an_invalid_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let id = SagaId::new();
        let mut saga = new_saga(id);
        saga.context = StoredContext::live(Arc::new(HashMap::from([((1u8, 2u8), 3u8)])));
        let error = store.create(saga, &mut Vec::new()).await.unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Invalid);
        assert!(
            error.to_string().contains("the context does not serialize"),
            "{error}"
        );
        assert!(store.load(id).await.unwrap().is_none());
    }
}
