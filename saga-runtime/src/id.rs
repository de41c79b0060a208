//! Saga identifiers.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The identity of one saga instance: a random UUID unless the caller chose one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SagaId(Uuid);

impl SagaId {
    /// A fresh random id.
    pub fn new() -> Self {
        SagaId(Uuid::new_v4())
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
pub(crate) type IdMap<V> = HashMap<SagaId, V, IdHashState>;

/// Hashes saga ids for [`IdMap`].
///
/// Every transition of a saga looks its id up (the store's record, the running set), and std's
/// SipHash costs more than a hundred instructions per 16-byte id. This is a keyed folded multiply
/// (the construction of `foldhash`): a few instructions per id, seeded per map from std's
/// `RandomState`, so ids chosen by callers cannot be aimed at one bucket without knowing the seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdHashState {
    seed: u64,
    multiplier: u64,
}

impl Default for IdHashState {
    fn default() -> Self {
        let random = RandomState::new();
        IdHashState {
            seed: random.hash_one(0x243f_6a88_85a3_08d3_u64),
            // Odd, so that the multiply loses no low bits of the word.
            multiplier: random.hash_one(0x1319_8a2e_0370_7344_u64) | 1,
        }
    }
}

impl BuildHasher for IdHashState {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            state: self.seed,
            multiplier: self.multiplier,
        }
    }
}

/// The hasher of [`IdHashState`].
pub(crate) struct IdHasher {
    state: u64,
    multiplier: u64,
}

impl IdHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.state ^ word) * u128::from(self.multiplier);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length keeps a short tail distinct from the same bytes followed by zeros.
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn id_hashes_are_stable_per_map_and_spread() {
        let state = IdHashState::default();
        let ids: Vec<SagaId> = (0..10_000).map(|_| SagaId::new()).collect();
        for id in &ids[..10] {
            assert_eq!(state.hash_one(id), state.hash_one(*id));
        }
        let hashes: HashSet<u64> = ids.iter().map(|id| state.hash_one(id)).collect();
        assert_eq!(hashes.len(), ids.len());
        // Sequential ids, as a caller might choose them, land in different buckets too.
        let buckets: HashSet<u64> = (0..1024u128)
            .map(|n| state.hash_one(SagaId::from_uuid(uuid::Uuid::from_u128(n))) & 1023)
            .collect();
        assert!(buckets.len() > 512, "{} buckets of 1024", buckets.len());
        // Two maps hash differently.
        let other = IdHashState::default();
        assert_ne!(state.hash_one(ids[0]), other.hash_one(ids[0]));
    }

    #[test]
    fn a_short_tail_is_not_its_zero_padding() {
        let state = IdHashState::default();
        let hash = |bytes: &[u8]| {
            let mut h = state.build_hasher();
            h.write(bytes);
            h.finish()
        };
        assert_ne!(hash(&[1]), hash(&[1, 0]));
        assert_ne!(hash(&[1, 2, 3]), hash(&[1, 2, 3, 0, 0, 0, 0, 0]));
    }
}
