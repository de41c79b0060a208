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
    at: StoredTime,
    kind: &'a SagaEventKind,
}

/// When an entry happened, as it is stored.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredTime {
    /// Nanoseconds since the Unix epoch: a quarter of a short entry less than `Time`.
    Nanos(u64),
    /// Serde's form of a `SystemTime` (`{"secs_since_epoch":..,"nanos_since_epoch":..}`).
    Time(SystemTime),
}

/// How a store writes the time of a history entry. Both read back the same; a store writes
/// `Nanos` only where every library version that reads its data reads them (SQLite since
/// schema version 7; PostgreSQL keeps `Time`, which its older versions read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeForm {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Nanos,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Time,
}

/// A history entry read back (other fields, as older entries have, are ignored).
#[derive(Deserialize)]
struct ReadEvent {
    at: StoredTime,
    kind: SagaEventKind,
}

/// Encodes an event as its history entry, its time in `form`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn encode_event(event: &SagaEvent, form: TimeForm) -> Result<String, StoreError> {
    let mut json = Vec::new();
    encode_event_into(&mut json, event, form)?;
    String::from_utf8(json).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("the event does not encode as text: {e}"),
        )
    })
}

/// [`encode_event`], appended to `out`.
pub(crate) fn encode_event_into(
    out: &mut Vec<u8>,
    event: &SagaEvent,
    form: TimeForm,
) -> Result<(), StoreError> {
    // Times a u64 of nanoseconds cannot hold (after 2554) keep the long form (serde refuses
    // those before 1970 in both).
    let nanos = event
        .at
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok());
    let at = match (form, nanos) {
        (TimeForm::Nanos, Some(nanos)) => StoredTime::Nanos(nanos),
        _ => StoredTime::Time(event.at),
    };
    let stored = StoredEvent {
        at,
        kind: &event.kind,
    };
    serde_json::to_writer(out, &stored).map_err(|e| {
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
    let at = match at {
        StoredTime::Nanos(nanos) => UNIX_EPOCH + Duration::from_nanos(nanos),
        StoredTime::Time(at) => at,
    };
    Ok(SagaEvent {
        saga_id: id,
        saga_type: saga_type.to_owned().into(),
        at,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SagaId;

    fn event(at: SystemTime) -> SagaEvent {
        SagaEvent {
            saga_id: SagaId::new(),
            saga_type: "OrderSaga".into(),
            at,
            kind: SagaEventKind::SagaCompleted {
                duration: Duration::from_millis(3),
            },
        }
    }

    #[test]
    fn an_entry_reads_back_its_time_in_either_form() {
        let at = UNIX_EPOCH + Duration::new(1_796_470_480, 538_466_363);
        let short = encode_event(&event(at), TimeForm::Nanos).unwrap();
        assert_eq!(
            short,
            r#"{"at":1796470480538466363,"kind":{"event":"saga_completed","duration":{"secs":0,"nanos":3000000}}}"#
        );
        let long = encode_event(&event(at), TimeForm::Time).unwrap();
        assert!(
            long.starts_with(r#"{"at":{"secs_since_epoch":1796470480,"#),
            "{long}"
        );
        for json in [short, long] {
            let id = SagaId::new();
            let read = decode_event(&json, id, "OrderSaga").unwrap();
            assert_eq!((read.at, read.saga_id), (at, id), "{json}");
        }
        // Before 1970: neither form holds it, and the entry is refused, as it always was.
        let early = UNIX_EPOCH - Duration::from_secs(1);
        let error = encode_event(&event(early), TimeForm::Nanos).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Invalid);
    }
}
