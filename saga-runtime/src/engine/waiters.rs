//! Who waits for which saga: a run of this engine that ends wakes the waiters of its saga only,
//! so that many waiters do not each wake for every event of every saga.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::id::IdMap;
use crate::SagaId;

/// The waiters of each saga, counted, so that a run ending with nobody waiting (the common case)
/// takes no lock.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    count: AtomicUsize,
    sagas: Mutex<IdMap<(Arc<Notify>, usize)>>,
}

/// One waiter's registration; dropping it unregisters.
pub(crate) struct Waiting<'a> {
    waiters: &'a Waiters,
    id: SagaId,
    pub(crate) notify: Arc<Notify>,
}

impl Waiters {
    /// Registers a waiter for saga `id`.
    pub(crate) fn wait(&self, id: SagaId) -> Waiting<'_> {
        let mut sagas = self.sagas.lock().unwrap_or_else(|e| e.into_inner());
        let (notify, count) = sagas
            .entry(id)
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        *count += 1;
        self.count.fetch_add(1, Ordering::AcqRel);
        Waiting {
            waiters: self,
            id,
            notify: Arc::clone(notify),
        }
    }

    /// Wakes the waiters of saga `id` (a run of it on this engine ended or let it go).
    pub(crate) fn wake(&self, id: SagaId) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let sagas = self.sagas.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((notify, _)) = sagas.get(&id) {
            notify.notify_waiters();
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut sagas = self.waiters.sagas.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, count)) = sagas.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                sagas.remove(&self.id);
            }
        }
        self.waiters.count.fetch_sub(1, Ordering::AcqRel);
    }
}
