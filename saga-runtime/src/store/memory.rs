//! The in-memory store: the default, for tests and for sagas that need not survive a restart.

use std::collections::hash_map;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use super::{
    CorruptRecord, Created, NewSaga, SagaRecord, SagaStore, StoreError, StoreFuture, Write,
};
use crate::event::SagaEvent;
use crate::id::IdMap;
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
    /// Boxed: the table stays small (a few hundred KB for the default retention rather than
    /// megabytes, most of it empty buckets), so lookups and the table's periodic rehashes touch
    /// little memory.
    sagas: IdMap<Box<Entry>>,
    by_key: HashMap<String, SagaId>,
    finished: VecDeque<SagaId>,
}

#[derive(Debug)]
struct Entry {
    /// The record, but for its type name and step names, which stay empty here: they are the
    /// definition's `&'static str`s below, turned into strings only when the record is read.
    record: SagaRecord,
    saga_type: &'static str,
    steps: Vec<&'static str>,
    history: Vec<SagaEvent>,
}

impl Entry {
    fn new(saga: NewSaga) -> Self {
        let NewSaga {
            id,
            saga_type,
            steps,
            context,
            idempotency_key,
            deadline,
            started,
            writes,
        } = saga;
        debug_assert!(writes.is_empty(), "the store applies them");
        // Empty names allocate nothing.
        let record = SagaRecord::new(NewSaga {
            id,
            saga_type: "",
            steps: Vec::new(),
            context,
            idempotency_key,
            deadline,
            started: started.clone(),
            writes: Vec::new(),
        });
        // A saga whose steps all succeed at their first attempt emits two events per step, plus
        // "saga started" and its end.
        let mut history = Vec::with_capacity(2 * steps.len() + 2);
        history.push(started);
        Entry {
            record,
            saga_type,
            steps,
            history,
        }
    }

    /// The full record, as [`SagaRecord::new`] and the writes since would have made it.
    fn record(&self) -> SagaRecord {
        SagaRecord {
            saga_type: self.saga_type.to_owned(),
            steps: self.steps.iter().map(|s| (*s).to_owned()).collect(),
            ..self.record.clone()
        }
    }
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

impl Inner {
    /// Applies `writes` to saga `id` in order, taking them out of the vector.
    fn apply(
        &mut self,
        id: SagaId,
        writes: &mut Vec<Write>,
        retention: usize,
    ) -> Result<(), StoreError> {
        let Some(entry) = self.sagas.get_mut(&id) else {
            writes.clear();
            return Err(StoreError::new(format!("no saga with id {id}")));
        };
        let mut terminal = false;
        for write in writes.drain(..) {
            entry.record.apply(&write);
            terminal |= entry.record.status.is_terminal() && write.status.is_some();
            entry.history.push(write.event);
        }
        if terminal {
            self.finished.push_back(id);
            self.evict(retention);
        }
        Ok(())
    }

    /// Forgets the oldest terminal sagas beyond `retention`.
    fn evict(&mut self, retention: usize) {
        while self.finished.len() > retention {
            let Some(old) = self.finished.pop_front() else {
                break;
            };
            // A retried saga is listed twice; only forget it once it is terminal.
            if let hash_map::Entry::Occupied(entry) = self.sagas.entry(old) {
                if entry.get().record.status.is_terminal() {
                    if let Some(key) = entry.remove().record.idempotency_key {
                        self.by_key.remove(&key);
                    }
                }
            }
        }
    }
}

/// The future of a write that succeeded. Zero-sized, so boxing it does not allocate: the store
/// answers every transition of every saga, and most answers are this one.
struct Written;

impl Future for Written {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(()))
    }
}

/// The future of a create that recorded a new saga; zero-sized like [`Written`].
struct CreatedNew;

impl Future for CreatedNew {
    type Output = Result<Created, StoreError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(Created::New))
    }
}

impl SagaStore for MemoryStore {
    fn create(&self, mut saga: NewSaga) -> StoreFuture<'_, Created> {
        let mut inner = self.lock();
        let existing = inner.sagas.get(&saga.id).map(|e| e.record.id).or_else(|| {
            saga.idempotency_key
                .as_ref()
                .and_then(|k| inner.by_key.get(k).copied())
        });
        if let Some(entry) = existing.and_then(|id| inner.sagas.get(&id)) {
            let record = Box::new(entry.record());
            return Box::pin(std::future::ready(Ok(Created::Existing(record))));
        }
        if let Some(key) = &saga.idempotency_key {
            inner.by_key.insert(key.clone(), saga.id);
        }
        let (id, mut writes) = (saga.id, std::mem::take(&mut saga.writes));
        inner.sagas.insert(id, Box::new(Entry::new(saga)));
        match inner.apply(id, &mut writes, self.retention) {
            Ok(()) => Box::pin(CreatedNew),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    fn write<'a>(&'a self, id: SagaId, writes: &mut Vec<Write>) -> StoreFuture<'a, ()> {
        match self.lock().apply(id, writes, self.retention) {
            Ok(()) => Box::pin(Written),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>> {
        let record = self.lock().sagas.get(&id).map(|e| e.record());
        Box::pin(std::future::ready(Ok(record)))
    }

    fn history(&self, id: SagaId) -> StoreFuture<'_, Option<Vec<SagaEvent>>> {
        let history = self.lock().sagas.get(&id).map(|e| e.history.clone());
        Box::pin(std::future::ready(Ok(history)))
    }

    fn unfinished(
        &self,
        after: Option<SagaId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Result<SagaRecord, CorruptRecord>>> {
        let inner = self.lock();
        let mut ids: Vec<SagaId> = inner
            .sagas
            .iter()
            .filter(|(id, e)| !e.record.status.is_terminal() && after.is_none_or(|a| **id > a))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.truncate(limit);
        let page = ids.iter().map(|id| Ok(inner.sagas[id].record())).collect();
        Box::pin(std::future::ready(Ok(page)))
    }

    fn begin_recovery(&self, id: SagaId) -> StoreFuture<'_, u32> {
        let result = match self.lock().sagas.get_mut(&id) {
            Some(entry) => {
                entry.record.recovery_attempts += 1;
                Ok(entry.record.recovery_attempts)
            }
            None => Err(StoreError::new(format!("no saga with id {id}"))),
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::SystemTime;

    use futures_util::FutureExt;

    use super::*;
    use crate::event::SagaEventKind;
    use crate::store::{CompletedStep, Progress, StoredContext};
    use crate::SagaStatus;

    fn new_saga(key: Option<&str>) -> NewSaga {
        NewSaga {
            id: SagaId::new(),
            saga_type: "OrderSaga",
            steps: vec!["reserve", "charge"],
            context: StoredContext::live(Arc::new(7u32)),
            idempotency_key: key.map(str::to_owned),
            deadline: None,
            started: event(SagaEventKind::SagaStarted { steps: Vec::new() }),
            writes: Vec::new(),
        }
    }

    fn event(kind: SagaEventKind) -> SagaEvent {
        SagaEvent {
            saga_id: SagaId::new(),
            saga_type: Cow::Borrowed("OrderSaga"),
            at: SystemTime::now(),
            kind,
        }
    }

    fn write(id: SagaId, status: Option<SagaStatus<usize>>, progress: Option<Progress>) -> Write {
        Write {
            event: SagaEvent {
                saga_id: id,
                saga_type: Cow::Borrowed("OrderSaga"),
                at: SystemTime::now(),
                kind: SagaEventKind::SagaCompleted {
                    duration: Default::default(),
                },
            },
            status,
            context: Some(StoredContext::live(Arc::new(8u32))),
            progress,
        }
    }

    fn create(store: &MemoryStore, saga: NewSaga) -> Created {
        store.create(saga).now_or_never().unwrap().unwrap()
    }

    fn load(store: &MemoryStore, id: SagaId) -> Option<SagaRecord> {
        store.load(id).now_or_never().unwrap().unwrap()
    }

    fn finish(store: &MemoryStore, id: SagaId) {
        let w = write(id, Some(SagaStatus::Completed), None);
        store
            .write(id, &mut vec![w])
            .now_or_never()
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_loaded_record_has_the_names_and_every_write() {
        let store = MemoryStore::new();
        let saga = new_saga(Some("k"));
        let id = saga.id;
        assert!(matches!(create(&store, saga), Created::New));
        let done = CompletedStep {
            step: 0,
            via_fallback: false,
            compensated: false,
            timed_out: false,
        };
        let w = write(
            id,
            Some(SagaStatus::Running { step: 1 }),
            Some(Progress::Completed(done)),
        );
        let at = w.event.at;
        store
            .write(id, &mut vec![w])
            .now_or_never()
            .unwrap()
            .unwrap();

        let record = load(&store, id).unwrap();
        assert_eq!(record.id, id);
        assert_eq!(record.saga_type, "OrderSaga");
        assert_eq!(record.steps, ["reserve", "charge"]);
        assert_eq!(record.status, SagaStatus::Running { step: 1 });
        assert_eq!(record.completed, [done]);
        assert_eq!(record.context.decode::<u32>(), Ok(8));
        assert_eq!(record.idempotency_key.as_deref(), Some("k"));
        assert_eq!(record.updated_at, at);
        let history = store.history(id).now_or_never().unwrap().unwrap().unwrap();
        assert_eq!(history.len(), 2, "saga started, then the write");

        // The same id or key finds the record, names included.
        let again = NewSaga {
            id,
            ..new_saga(None)
        };
        match create(&store, again) {
            Created::Existing(r) => assert_eq!((r.id, r.steps.len()), (id, 2)),
            Created::New => panic!("created twice"),
        }
        match create(&store, new_saga(Some("k"))) {
            Created::Existing(r) => assert_eq!(r.saga_type, "OrderSaga"),
            Created::New => panic!("created twice"),
        }
    }

    #[test]
    fn writing_to_an_unknown_saga_fails() {
        let store = MemoryStore::new();
        let id = SagaId::new();
        let result = store
            .write(id, &mut vec![write(id, None, None)])
            .now_or_never()
            .unwrap();
        assert!(result.is_err());
    }

    #[test]
    fn the_oldest_terminal_sagas_are_forgotten_with_their_keys() {
        let store = MemoryStore::with_retention(2);
        let sagas: Vec<NewSaga> = ["a", "b", "c"].map(|k| new_saga(Some(k))).into();
        let ids: Vec<SagaId> = sagas.iter().map(|s| s.id).collect();
        let running = new_saga(None);
        let running_id = running.id;
        create(&store, running);
        for saga in sagas {
            create(&store, saga);
        }
        for &id in &ids {
            finish(&store, id);
        }
        assert!(load(&store, ids[0]).is_none());
        assert!(load(&store, ids[1]).is_some());
        assert!(load(&store, ids[2]).is_some());
        assert!(load(&store, running_id).is_some(), "running sagas are kept");
        // The forgotten saga's key is free again; the kept ones' are not.
        assert!(matches!(create(&store, new_saga(Some("a"))), Created::New));
        assert!(matches!(
            create(&store, new_saga(Some("b"))),
            Created::Existing(_)
        ));
    }
}
