//! The in-memory store: the default, for tests and for sagas that need not survive a restart.
//!
//! Sagas are found by id in one map behind one lock, but each saga's record has a lock of its
//! own, and a run writes through its saga's [`Cell`] (see [`SagaStore::slot`]): a transition
//! takes neither the map's lock nor a lookup among every saga kept, which on many threads were
//! most of what a write cost (the lock passed between threads, the lookup missing the cache).
//! Lock order: the map, then a cell; never the other way round.

use std::collections::hash_map;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use super::{
    check_fence, Acquire, Admission, CorruptRecord, Created, Fence, Held, LeaseRequest, NewSaga,
    Requested, SagaQuery, SagaRecord, SagaSlot, SagaStore, SagaSummary, StatusCount, StoreError,
    StoreFuture, Write,
};
use crate::event::SagaEvent;
use crate::id::IdMap;
use crate::{OperatorRequest, Refusal, SagaId, SagaShape};

mod entry;
mod history;

use entry::{expiry, lease_for, Entry};

/// Keeps sagas in a map, for as long as the store lives, with one exception so that a
/// long-running program does not grow without bound: ended sagas started without an idempotency
/// key are forgotten oldest first beyond the retention limit (default
/// [`Self::DEFAULT_RETENTION`]); `status(id)` of a forgotten saga is `NotFound`. A saga started with
/// an idempotency key is never forgotten: a second start with its key returns it, never runs the
/// saga again, however many sagas ended since. (For sagas and keys that outlive the process, use
/// a durable store.)
#[derive(Debug)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

/// What the store's cells reach back to when their saga ends.
#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    retention: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each saga behind a pointer: the table stays small (a few hundred KB for the default
    /// retention rather than megabytes, most of it empty buckets), so lookups and the table's
    /// periodic rehashes touch little memory.
    sagas: IdMap<Arc<Cell>>,
    by_key: HashMap<String, SagaId>,
    finished: VecDeque<SagaId>,
    /// Creation order, for `acquire`'s "oldest first".
    seq: u64,
    /// The saga type shapes recorded, oldest first.
    types: Vec<SagaShape>,
}

/// One saga, locked on its own; the map and its run's [`SagaSlot`] share it.
#[derive(Debug)]
struct Cell {
    entry: Mutex<Entry>,
    /// To forget the oldest ended sagas when this one ends (weak: the map holds the cells).
    store: Weak<Shared>,
}

impl Cell {
    fn lock(&self) -> MutexGuard<'_, Entry> {
        // A write is checked whole before anything of it is applied: a panic while the lock
        // was held cannot have left half of one.
        self.entry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SagaSlot for Cell {
    fn write(&self, fence: Fence, writes: &mut Vec<Write>) -> StoreFuture<'_, u64> {
        let mut entry = self.lock();
        let written = entry.apply(Some(fence), writes);
        let (id, forgettable) = (entry.record.id, entry.forgettable());
        drop(entry);
        if let (Ok(_), true, Some(store)) = (&written, forgettable, self.store.upgrade()) {
            let forgotten = store.lock().finished(id, store.retention);
            // Dropped once the store's lock is free (see `Inner::finished`).
            drop(forgotten);
        }
        StoreFuture::ready(written)
    }
}

impl MemoryStore {
    /// Default number of ended sagas without an idempotency key kept.
    pub const DEFAULT_RETENTION: usize = 10_000;

    /// A store keeping the last [`Self::DEFAULT_RETENTION`] ended sagas without a key (and every
    /// saga with one).
    pub fn new() -> Self {
        Self::with_retention(Self::DEFAULT_RETENTION)
    }

    /// A store keeping the last `retention` ended sagas without a key (running ones, and those
    /// with a key, are always kept).
    pub fn with_retention(retention: usize) -> Self {
        MemoryStore {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::default()),
                retention,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write: a request is checked
        // whole before anything of it is applied. Going on is safe.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    /// Saga `id`'s record, locked.
    fn entry(&self, id: &SagaId) -> Option<MutexGuard<'_, Entry>> {
        self.sagas.get(id).map(|cell| cell.lock())
    }

    /// Applies `writes` to saga `id` in order if `fence` holds (always, for `None`: a new saga's
    /// first writes), taking them out of the vector.
    fn apply(
        &mut self,
        id: SagaId,
        fence: Option<Fence>,
        writes: &mut Vec<Write>,
        retention: usize,
    ) -> Result<u64, StoreError> {
        let Some(mut entry) = self.entry(&id) else {
            writes.clear();
            return Err(StoreError::not_found(id));
        };
        let version = entry.apply(fence, writes)?;
        let forgettable = entry.forgettable();
        drop(entry);
        if forgettable {
            // Dropped under the store's lock: writes by id (not through a slot) are rare.
            drop(self.finished(id, retention));
        }
        Ok(version)
    }

    /// Saga `id` ended: it is forgotten once `retention` sagas ended after it. Returns the
    /// sagas forgotten now (one, once the store is full), for the caller to drop once it let go
    /// of the store's lock: freeing a saga's record and history is most of the work here, and
    /// with thousands of sagas ending at once every other saga's start waited for it.
    #[must_use = "drop it after the store's lock"]
    fn finished(&mut self, id: SagaId, retention: usize) -> Vec<Arc<Cell>> {
        self.finished.push_back(id);
        let mut forgotten = Vec::new();
        while self.finished.len() > retention {
            let Some(old) = self.finished.pop_front() else {
                break;
            };
            // A retried saga is listed twice; only forget it once it is terminal.
            if let hash_map::Entry::Occupied(cell) = self.sagas.entry(old) {
                let ended = cell.get().lock().record.status.is_terminal();
                if ended {
                    let cell = cell.remove();
                    if let Some(key) = cell.lock().record.idempotency_key.take() {
                        self.by_key.remove(&key);
                    }
                    forgotten.push(cell);
                }
            }
        }
        forgotten
    }
}

impl SagaStore for MemoryStore {
    fn create<'a>(&'a self, saga: NewSaga, writes: &mut Vec<Write>) -> StoreFuture<'a, Created> {
        // The new saga's entry is built before the store's lock is taken, so that the lock is
        // held only to look for an existing saga and to insert: every start and every end of
        // every saga waits for it. (Built for nothing when the saga exists: a rare start.)
        let (id, key) = (saga.id, saga.idempotency_key.clone());
        // Its place in creation order is set under the lock.
        let mut entry = Entry::new(saga, 0);
        let result = match writes.is_empty() {
            true => Ok(1),
            false => entry.apply(None, writes),
        };
        // Read after the first writes: writes that end the saga end its lease too.
        let lease = entry.record.lease.clone();
        let forgettable = entry.forgettable();
        let cell = Arc::new(Cell {
            entry: Mutex::new(entry),
            store: Arc::downgrade(&self.shared),
        });
        let mut inner = self.lock();
        let existing = match inner.sagas.contains_key(&id) {
            true => Some(id),
            false => key.as_ref().and_then(|k| inner.by_key.get(k).copied()),
        };
        if let Some(mut existing) = existing.and_then(|id| inner.entry(&id)) {
            let record = Box::new(existing.record());
            writes.clear();
            return StoreFuture::ready(Ok(Created::Existing(record)));
        }
        if let Some(key) = key {
            inner.by_key.insert(key, id);
        }
        inner.seq += 1;
        cell.lock().seq = inner.seq;
        inner.sagas.insert(id, cell);
        let forgotten = match forgettable {
            true => inner.finished(id, self.shared.retention),
            false => Vec::new(),
        };
        drop(inner);
        drop(forgotten);
        StoreFuture::ready(result.map(|version| Created::New { version, lease }))
    }

    fn write<'a>(
        &'a self,
        id: SagaId,
        fence: Fence,
        writes: &mut Vec<Write>,
    ) -> StoreFuture<'a, u64> {
        let retention = self.shared.retention;
        StoreFuture::ready(self.lock().apply(id, Some(fence), writes, retention))
    }

    fn slot(&self, id: SagaId) -> Option<Arc<dyn SagaSlot>> {
        let cell = Arc::clone(self.lock().sagas.get(&id)?);
        Some(cell)
    }

    fn acquire(&self, request: Acquire) -> StoreFuture<'_, Vec<Result<SagaRecord, CorruptRecord>>> {
        let inner = self.lock();
        let now = SystemTime::now();
        let mut candidates: Vec<(u64, SagaId)> = inner
            .sagas
            .iter()
            .filter(|(id, _)| request.only.is_none_or(|only| only == **id))
            .filter_map(|(id, cell)| {
                let e = cell.lock();
                let wanted = !e.record.status.is_terminal()
                    && request
                        .types
                        .as_ref()
                        .is_none_or(|types| types.iter().any(|t| t == e.saga_type))
                    && e.acquirable(&request, now);
                wanted.then_some((e.seq, *id))
            })
            .collect();
        candidates.sort_unstable();
        candidates.truncate(request.limit);
        let records = candidates
            .into_iter()
            .map(|(_, id)| {
                let mut entry = inner.entry(&id).expect("a candidate exists");
                entry.token += 1;
                let taken_over = entry.record.lease.is_some();
                entry.record.lease = Some(lease_for(request.lease.clone(), entry.token, now));
                entry.wake_at = None;
                if taken_over {
                    entry.state().recovery_attempts += 1;
                }
                Ok(entry.record())
            })
            .collect();
        StoreFuture::ready(Ok(records))
    }

    fn renew(&self, owner: &str, ids: &[SagaId], duration: Duration) -> StoreFuture<'_, Vec<Held>> {
        let inner = self.lock();
        let expires_at = expiry(SystemTime::now(), duration);
        let held = ids
            .iter()
            .filter_map(|id| {
                let mut entry = inner.entry(id)?;
                let record = &mut entry.record;
                let cancel_requested = record.cancel_requested;
                let lease = record.lease.as_mut()?;
                (&*lease.owner == owner).then(|| {
                    lease.expires_at = expires_at;
                    Held::new(*id, lease.token, cancel_requested)
                })
            })
            .collect();
        StoreFuture::ready(Ok(held))
    }

    fn release(
        &self,
        id: SagaId,
        fence: Fence,
        wake_at: Option<SystemTime>,
    ) -> StoreFuture<'_, ()> {
        let inner = self.lock();
        let result = match inner.entry(&id) {
            None => Err(StoreError::not_found(id)),
            Some(mut entry) => check_fence(
                id,
                fence,
                entry.lease_token(),
                &entry.record.status,
                entry.record.version,
            )
            .map(|()| {
                entry.record.lease = None;
                entry.wake_at = wake_at;
            }),
        };
        StoreFuture::ready(result)
    }

    fn next_wake(&self, types: Option<Vec<String>>) -> StoreFuture<'_, Option<SystemTime>> {
        let inner = self.lock();
        let now = SystemTime::now();
        let next = inner
            .sagas
            .values()
            .filter_map(|cell| {
                let e = cell.lock();
                let due = !e.record.status.is_terminal()
                    && e.record.lease.as_ref().is_none_or(|l| l.expires_at <= now)
                    && types
                        .as_ref()
                        .is_none_or(|types| types.iter().any(|t| t == e.saga_type));
                e.wake_at.filter(|wake| due && *wake > now)
            })
            .min();
        StoreFuture::ready(Ok(next))
    }

    fn request(
        &self,
        id: SagaId,
        request: OperatorRequest,
        lease: Option<LeaseRequest>,
    ) -> StoreFuture<'_, Result<SagaRecord, Refusal>> {
        let inner = self.lock();
        let Some(mut entry) = inner.entry(&id) else {
            return StoreFuture::ready(Err(StoreError::not_found(id)));
        };
        let now = SystemTime::now();
        let saga = Requested {
            id,
            saga_type: entry.saga_type,
            steps: entry.steps.len(),
            at: now,
        };
        let admission = match entry.state().admit(request, saga) {
            Ok(admission) => admission,
            Err(refusal) => return StoreFuture::ready(Ok(Err(refusal))),
        };
        match admission {
            Admission::Cancel => entry.record.cancel_requested = true,
            Admission::Reopen(write) => {
                entry.push(*write);
                if let Some(lease) = lease {
                    entry.token += 1;
                    entry.record.lease = Some(lease_for(lease, entry.token, now));
                }
            }
        }
        if entry
            .record
            .lease
            .as_ref()
            .is_none_or(|l| l.expires_at <= now)
        {
            // No live worker holds it: it is due at once.
            entry.wake_at = None;
        }
        StoreFuture::ready(Ok(Ok(entry.record())))
    }

    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>> {
        let record = self.lock().entry(&id).map(|mut e| e.record());
        StoreFuture::ready(Ok(record))
    }

    fn history(
        &self,
        id: SagaId,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'_, Option<Vec<SagaEvent>>> {
        let history = self.lock().entry(&id).map(|e| {
            let from = usize::try_from(from).unwrap_or(usize::MAX);
            let events = e.history.iter().skip(from).take(limit);
            events.map(|recorded| e.event(recorded)).collect()
        });
        StoreFuture::ready(Ok(history))
    }

    fn list(&self, query: SagaQuery) -> StoreFuture<'_, Vec<SagaSummary>> {
        let inner = self.lock();
        let mut page: Vec<SagaSummary> = inner
            .sagas
            .values()
            .map(|cell| cell.lock().summary())
            .filter(|s| query.matches(s))
            .collect();
        page.sort_unstable_by_key(|s| s.id);
        page.truncate(query.limit);
        StoreFuture::ready(Ok(page))
    }

    fn record_type(&self, shape: SagaShape) -> StoreFuture<'_, ()> {
        let mut inner = self.lock();
        if !inner.types.contains(&shape) {
            inner.types.push(shape);
        }
        StoreFuture::ready(Ok(()))
    }

    fn saga_types(&self) -> StoreFuture<'_, Vec<SagaShape>> {
        let mut types = self.lock().types.clone();
        // By name, newest first: a stable sort of the reversed recording order.
        types.reverse();
        types.sort_by(|a, b| a.name.cmp(&b.name));
        StoreFuture::ready(Ok(types))
    }

    fn counts(&self) -> StoreFuture<'_, Vec<StatusCount>> {
        let inner = self.lock();
        let mut counts: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
        for cell in inner.sagas.values() {
            let entry = cell.lock();
            *counts
                .entry((entry.saga_type, entry.record.status.name()))
                .or_default() += 1;
        }
        let counts = counts
            .into_iter()
            .map(|((saga_type, status), count)| StatusCount {
                saga_type: saga_type.to_owned(),
                status: status.to_owned(),
                count,
            })
            .collect();
        StoreFuture::ready(Ok(counts))
    }

    fn shared(&self) -> bool {
        false
    }

    fn encodes(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
