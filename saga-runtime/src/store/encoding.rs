//! What every database store encodes the same way: times as milliseconds since the Unix epoch,
//! history entries as JSON without the saga's id and type (its row has them).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::event::{SagaEvent, SagaEventKind};
use crate::store::{StoreError, StoreErrorKind};
use crate::SagaId;

/// Milliseconds since the Unix epoch, as rows keep times.
pub(crate) fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A time a row keeps.
pub(crate) fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// A history entry as it is stored: the event but for the saga's id and type, which the saga's
/// row holds (every write encodes its event, and these were a third of it). Entries written
/// with them, before, read the same.
#[derive(Serialize)]
struct StoredEvent<'a> {
    at: &'a SystemTime,
    kind: &'a SagaEventKind,
}

/// A history entry read back (other fields, as older entries have, are ignored).
#[derive(Deserialize)]
struct ReadEvent {
    at: SystemTime,
    kind: SagaEventKind,
}

/// Encodes an event as its history entry.
pub(crate) fn encode_event(event: &SagaEvent) -> Result<String, StoreError> {
    let stored = StoredEvent {
        at: &event.at,
        kind: &event.kind,
    };
    serde_json::to_string(&stored).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("the event does not serialize: {e}"),
        )
    })
}

/// Decodes a history entry of saga `id`, of type `saga_type`.
pub(crate) fn decode_event(
    json: &str,
    id: SagaId,
    saga_type: &str,
) -> serde_json::Result<SagaEvent> {
    let ReadEvent { at, kind } = serde_json::from_str(json)?;
    Ok(SagaEvent {
        saga_id: id,
        saga_type: saga_type.to_owned().into(),
        at,
        kind,
    })
}
