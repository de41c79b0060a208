//! Saga identifiers.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::{NoContext, Timestamp, Uuid};

/// The identity of one saga instance: a time-ordered UUID (version 7) unless the caller chose
/// one.
///
/// Time-ordered so that ids made one after the other sort one after the other: a durable store's
/// indexes then grow at one end instead of touching a random page for every new saga.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SagaId(Uuid);

impl SagaId {
    /// A fresh id: its first 48 bits are the current Unix time in milliseconds, the rest
    /// random (UUID version 7). Ids made in different milliseconds sort in time order.
    pub fn new() -> Self {
        SagaId::at(SystemTime::now())
    }

    /// A fresh id made at `time` (the caller's clock read, shared with what else it records).
    pub(crate) fn at(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        // No shared context: within one millisecond the order may be any, which is all an index
        // needs, and it spares a lock per id.
        let timestamp = Timestamp::from_unix(NoContext, since.as_secs(), since.subsec_nanos());
        SagaId(Uuid::new_v7(timestamp))
    }

    /// Wraps an existing UUID.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        SagaId(uuid)
    }

    /// The underlying UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for SagaId {
    fn default() -> Self {
        SagaId::new()
    }
}

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SagaId({})", self.0)
    }
}

impl FromStr for SagaId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::from_str(s).map(SagaId)
    }
}

/// A map keyed by saga id, as the engine and the in-memory store keep them.
///
/// Hashed with foldhash, seeded at random per map: every transition of every saga looks its id up
/// a few times, and SipHash (the standard library's) cost more than the rest of such a lookup.
/// The random seed keeps crafted ids (a caller may choose a saga's id) from colliding on purpose.
pub(crate) type IdMap<V> = HashMap<SagaId, V, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_made_in_later_milliseconds_sort_later_as_text_too() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_000);
        let ids: Vec<SagaId> = (0..5)
            .map(|ms| SagaId::at(t + Duration::from_millis(ms)))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert!(text.windows(2).all(|w| w[0] < w[1]), "{text:?}");
        assert_eq!(ids[0].as_uuid().get_version_num(), 7);
        assert_ne!(SagaId::at(t), SagaId::at(t), "the rest is random");
    }
}
