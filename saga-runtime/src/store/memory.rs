//! The in-memory store: the default, for tests and for sagas that need not survive a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{Created, NewSaga, SagaRecord, SagaStore, StoreError, StoreFuture, Write};
use crate::event::SagaEvent;
use crate::SagaId;

/// Keeps sagas in a map. Terminal sagas beyond the retention limit are forgotten oldest first,
/// so a long-running program does not grow without bound.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    retention: usize,
}

#[derive(Debug, Default)]
struct Inner {
    sagas: HashMap<SagaId, Entry>,
    by_key: HashMap<String, SagaId>,
    finished: VecDeque<SagaId>,
}

#[derive(Debug)]
struct Entry {
    record: SagaRecord,
    history: Vec<SagaEvent>,
}

impl MemoryStore {
    /// Default number of terminal sagas kept.
    pub const DEFAULT_RETENTION: usize = 10_000;

    /// A store keeping the last [`Self::DEFAULT_RETENTION`] terminal sagas.
    pub fn new() -> Self {
        Self::with_retention(Self::DEFAULT_RETENTION)
    }

    /// A store keeping the last `retention` terminal sagas (running ones are always kept).
    pub fn with_retention(retention: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            retention,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write: writes are applied
        // in one statement each. Going on is safe.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SagaStore for MemoryStore {
    fn create(&self, saga: NewSaga) -> StoreFuture<'_, Created> {
        let mut inner = self.lock();
        let existing = inner.sagas.get(&saga.id).map(|e| e.record.id).or_else(|| {
            saga.idempotency_key
                .as_ref()
                .and_then(|k| inner.by_key.get(k).copied())
        });
        let result = match existing.and_then(|id| inner.sagas.get(&id)) {
            Some(entry) => Created::Existing(Box::new(entry.record.clone())),
            None => {
                if let Some(key) = &saga.idempotency_key {
                    inner.by_key.insert(key.clone(), saga.id);
                }
                let id = saga.id;
                inner.sagas.insert(
                    id,
                    Entry {
                        record: SagaRecord::new(saga),
                        history: Vec::new(),
                    },
                );
                Created::New
            }
        };
        Box::pin(std::future::ready(Ok(result)))
    }

    fn write(&self, id: SagaId, write: Write) -> StoreFuture<'_, ()> {
        let mut inner = self.lock();
        let result = match inner.sagas.get_mut(&id) {
            Some(entry) => {
                entry.record.apply(&write);
                let terminal = entry.record.status.is_terminal() && write.status.is_some();
                entry.history.push(write.event);
                if terminal {
                    inner.finished.push_back(id);
                    while inner.finished.len() > self.retention {
                        let Some(old) = inner.finished.pop_front() else {
                            break;
                        };
                        // A retried saga is listed twice; only forget it once it is terminal.
                        if inner
                            .sagas
                            .get(&old)
                            .is_some_and(|e| e.record.status.is_terminal())
                        {
                            if let Some(e) = inner.sagas.remove(&old) {
                                if let Some(key) = e.record.idempotency_key {
                                    inner.by_key.remove(&key);
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
            None => Err(StoreError::new(format!("no saga with id {id}"))),
        };
        Box::pin(std::future::ready(result))
    }

    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>> {
        let record = self.lock().sagas.get(&id).map(|e| e.record.clone());
        Box::pin(std::future::ready(Ok(record)))
    }

    fn history(&self, id: SagaId) -> StoreFuture<'_, Option<Vec<SagaEvent>>> {
        let history = self.lock().sagas.get(&id).map(|e| e.history.clone());
        Box::pin(std::future::ready(Ok(history)))
    }
}
