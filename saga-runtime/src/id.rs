//! Saga identifiers.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// random (UUID version 7); ids made by one process increase.
    pub fn new() -> Self {
        SagaId(Uuid::now_v7())
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
pub(crate) type IdMap<V> = HashMap<SagaId, V>;
