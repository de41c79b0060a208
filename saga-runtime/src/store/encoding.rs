//! What every database store encodes the same way: times as milliseconds since the Unix epoch,
//! history entries as JSON without the saga's id and type (its row has them).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub(crate) mod json;
#[cfg(feature = "sqlite")]
mod short;

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

/// When an entry happened, as it is stored.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredTime {
    /// Nanoseconds since the Unix epoch: a quarter of a short entry less than `Time`.
    Nanos(u64),
    /// Serde's form of a `SystemTime` (`{"secs_since_epoch":..,"nanos_since_epoch":..}`).
    Time(SystemTime),
}

/// How a store writes a history entry. Every form reads back the same; a store writes one only
/// where every library version that reads its data reads it (SQLite writes `Short` since schema
/// version 8; PostgreSQL keeps `Time`, which its older versions read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryForm {
    /// The short form (see [`short`]) where the kind has one, else the object form with the time
    /// in nanoseconds (a quarter of a short entry less than `Time`; SQLite's form in version 7).
    #[cfg(feature = "sqlite")]
    Short,
    /// `{"at":..,"kind":..}`, the time in serde's form of a `SystemTime`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Time,
}

/// A history entry read back (other fields, as older entries have, are ignored). It is stored
/// as the event but for the saga's id and type, which the saga's row holds (every write encodes
/// its event, and these were a third of it): `{"at":..,"kind":..}` (see [`json`]). Entries
/// written with them, before, read the same.
#[derive(Deserialize)]
struct ReadEvent {
    at: StoredTime,
    kind: SagaEventKind,
}

/// Encodes an event as its history entry, its time in `form`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn encode_event(event: &SagaEvent, form: EntryForm) -> Result<String, StoreError> {
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
    form: EntryForm,
) -> Result<(), StoreError> {
    let refused = |e: &dyn std::fmt::Display| {
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("the event does not serialize: {e}"),
        )
    };
    // Times a u64 of nanoseconds cannot hold (after 2554) keep serde's form; serde refuses
    // those before 1970 in both.
    match form {
        #[cfg(feature = "sqlite")]
        EntryForm::Short => {
            let nanos = event
                .at
                .duration_since(UNIX_EPOCH)
                .ok()
                .and_then(|d| u64::try_from(d.as_nanos()).ok());
            if let Some(nanos) = nanos {
                if short::encode(out, nanos, &event.kind).map_err(|e| refused(&e))? {
                    return Ok(());
                }
                out.extend_from_slice(b"{\"at\":");
                json::number(out, nanos);
                return object_kind(out, &event.kind).map_err(|e| refused(&e));
            }
        }
        EntryForm::Time => {}
    }
    out.extend_from_slice(b"{\"at\":");
    json::system_time(out, event.at)
        .ok_or_else(|| refused(&"SystemTime must be later than UNIX_EPOCH"))?;
    object_kind(out, &event.kind).map_err(|e| refused(&e))
}

/// The rest of an entry's object form, after its time: `,"kind":..}`.
fn object_kind(out: &mut Vec<u8>, kind: &SagaEventKind) -> json::Result {
    out.extend_from_slice(b",\"kind\":");
    json::event_kind(out, kind)?;
    out.push(b'}');
    Ok(())
}

/// Decodes a history entry of saga `id`, of type `saga_type`.
pub(crate) fn decode_event(
    json: &str,
    id: SagaId,
    saga_type: &str,
) -> serde_json::Result<SagaEvent> {
    let (at, kind) = match json.as_bytes().first() {
        #[cfg(feature = "sqlite")]
        Some(b'[') => short::decode(json)?,
        _ => {
            let ReadEvent { at, kind } = serde_json::from_str(json)?;
            let at = match at {
                StoredTime::Nanos(nanos) => UNIX_EPOCH + Duration::from_nanos(nanos),
                StoredTime::Time(at) => at,
            };
            (at, kind)
        }
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

    fn event(at: SystemTime, kind: SagaEventKind) -> SagaEvent {
        SagaEvent {
            saga_id: SagaId::new(),
            saga_type: "OrderSaga".into(),
            at,
            kind,
        }
    }

    fn completed() -> SagaEventKind {
        SagaEventKind::SagaCompleted {
            duration: Duration::from_millis(3),
        }
    }

    /// Reads `text` back as an entry of `written`'s saga.
    fn read(text: &str, written: &SagaEvent) -> SagaEvent {
        decode_event(text, written.saga_id, &written.saga_type).unwrap()
    }

    #[test]
    fn an_entry_reads_back_its_time_in_every_form() {
        let at = UNIX_EPOCH + Duration::new(1_796_470_480, 538_466_363);
        let written = event(at, completed());
        let long = encode_event(&written, EntryForm::Time).unwrap();
        assert!(
            long.starts_with(r#"{"at":{"secs_since_epoch":1796470480,"#),
            "{long}"
        );
        // As SQLite wrote entries in schema version 7.
        let nanos = r#"{"at":1796470480538466363,"kind":{"event":"saga_completed","duration":{"secs":0,"nanos":3000000}}}"#;
        #[cfg_attr(not(feature = "sqlite"), allow(unused_mut))]
        let mut texts = vec![long, nanos.to_owned()];
        #[cfg(feature = "sqlite")]
        {
            let short = encode_event(&written, EntryForm::Short).unwrap();
            assert_eq!(short, "[1796470480538466363,4,3000000]");
            texts.push(short);
        }
        for text in texts {
            assert_eq!(read(&text, &written), written, "{text}");
        }
        // Before 1970: no form holds it, and the entry is refused, as it always was.
        let early = event(UNIX_EPOCH - Duration::from_secs(1), completed());
        let error = encode_event(&early, EntryForm::Time).unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Invalid);
        #[cfg(feature = "sqlite")]
        {
            let error = encode_event(&early, EntryForm::Short).unwrap_err();
            assert_eq!(error.kind(), StoreErrorKind::Invalid);
        }
    }

    /// Every kind reads back as it was written, in the short form where it has one and in the
    /// object form (its time in nanoseconds) where it has not.
    #[cfg(feature = "sqlite")]
    #[test]
    fn every_kind_reads_back_whole_from_the_short_form_or_the_object_form() {
        let at = UNIX_EPOCH + Duration::new(1_796_470_480, 538_466_363);
        let mut short = 0;
        for name in ["step_a", "quote \" and \\ back\n", "ünï ✓"] {
            for kind in json::tests::every_kind(name) {
                let written = event(at, kind);
                let text = encode_event(&written, EntryForm::Short).unwrap();
                assert!(!text.contains('\n'), "{text}");
                let is_short = text.starts_with('[');
                let expected = match &written.kind {
                    SagaEventKind::SagaStarted { .. }
                    | SagaEventKind::StepStarted { .. }
                    | SagaEventKind::StepCompensated { .. }
                    | SagaEventKind::SagaCompensated { .. } => true,
                    SagaEventKind::StepCompleted {
                        output, duration, ..
                    } => output.is_none() && duration.as_nanos() <= u64::MAX as u128,
                    SagaEventKind::SagaCompleted { .. } => true,
                    _ => false,
                };
                assert_eq!(is_short, expected, "{text}");
                if !is_short {
                    assert!(
                        text.starts_with(r#"{"at":1796470480538466363,"kind":"#),
                        "{text}"
                    );
                }
                short += usize::from(is_short);
                assert_eq!(read(&text, &written), written, "{text}");
            }
        }
        // Per name: 2 starts of the saga, 2 of a step, a completion without output, a
        // compensation, the saga completed and compensated.
        assert_eq!(short, 3 * 8);
        // After 2554 the time is serde's: the object form, which holds it.
        let late = event(
            UNIX_EPOCH + Duration::from_secs(20_000_000_000),
            completed(),
        );
        let text = encode_event(&late, EntryForm::Short).unwrap();
        assert!(text.starts_with(r#"{"at":{"secs_since_epoch":"#), "{text}");
        assert_eq!(read(&text, &late), late);
    }

    /// A short entry that is not one of the forms above is an error naming it, never a panic or
    /// a wrong event.
    #[cfg(feature = "sqlite")]
    #[test]
    fn a_malformed_short_entry_is_an_error() {
        for text in [
            "[]",
            "[1]",
            "[1,9,2]",
            "[1,1,\"a\",2,1]",
            "[1,1,\"a\",0]",
            "[1,0,[1]]",
            "[1,2,\"a\",1,-5]",
            "[1,3,\"a\",4294967296]",
            "[1,4,3,4]",
            "[-1,4,3]",
            "[1,4,3",
        ] {
            let error = decode_event(text, SagaId::new(), "OrderSaga").unwrap_err();
            assert!(!error.to_string().is_empty(), "{text}");
        }
    }
}
