//! A store as a crashed process sees it: from the crash on, nothing goes through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::event::SagaEvent;
use crate::store::{
    Acquire, CorruptRecord, Created, Fence, Held, LeaseRequest, NewSaga, SagaQuery, SagaRecord,
    SagaStore, SagaSummary, StatusCount, StoreError, StoreErrorKind, StoreFuture, Write,
};
use crate::{OperatorRequest, Refusal, SagaId, SagaShape};

/// The engine's store until its process "crashes" (`dead` is set), then a store that refuses
/// every request, so that the crashed engine writes nothing more, as a dead process would not.
pub(crate) struct Crashable {
    pub(crate) store: Arc<dyn SagaStore>,
    pub(crate) dead: Arc<AtomicBool>,
}

impl Crashable {
    fn alive(&self) -> Result<&dyn SagaStore, StoreError> {
        match self.dead.load(Ordering::SeqCst) {
            false => Ok(&*self.store),
            true => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the engine's process crashed here (test kit)",
            )),
        }
    }
}

/// The store's answer while alive, the refusal once dead.
macro_rules! through {
    ($self:ident, |$store:ident| $call:expr) => {
        match $self.alive() {
            Ok($store) => $call,
            Err(error) => StoreFuture::ready(Err(error)),
        }
    };
}

impl SagaStore for Crashable {
    fn create<'a>(&'a self, saga: NewSaga, writes: &mut Vec<Write>) -> StoreFuture<'a, Created> {
        match self.alive() {
            Ok(store) => store.create(saga, writes),
            Err(error) => {
                writes.clear();
                StoreFuture::ready(Err(error))
            }
        }
    }

    fn write<'a>(
        &'a self,
        id: SagaId,
        fence: Fence,
        writes: &mut Vec<Write>,
    ) -> StoreFuture<'a, u64> {
        match self.alive() {
            Ok(store) => store.write(id, fence, writes),
            Err(error) => {
                writes.clear();
                StoreFuture::ready(Err(error))
            }
        }
    }

    fn acquire(&self, request: Acquire) -> StoreFuture<'_, Vec<Result<SagaRecord, CorruptRecord>>> {
        through!(self, |store| store.acquire(request))
    }

    fn renew(&self, owner: &str, ids: &[SagaId], duration: Duration) -> StoreFuture<'_, Vec<Held>> {
        through!(self, |store| store.renew(owner, ids, duration))
    }

    fn release(
        &self,
        id: SagaId,
        fence: Fence,
        wake_at: Option<SystemTime>,
    ) -> StoreFuture<'_, ()> {
        through!(self, |store| store.release(id, fence, wake_at))
    }

    fn next_wake(&self, types: Option<Vec<String>>) -> StoreFuture<'_, Option<SystemTime>> {
        through!(self, |store| store.next_wake(types))
    }

    fn request(
        &self,
        id: SagaId,
        request: OperatorRequest,
        lease: Option<LeaseRequest>,
    ) -> StoreFuture<'_, Result<SagaRecord, Refusal>> {
        through!(self, |store| store.request(id, request, lease))
    }

    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>> {
        through!(self, |store| store.load(id))
    }

    fn history(
        &self,
        id: SagaId,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'_, Option<Vec<SagaEvent>>> {
        through!(self, |store| store.history(id, from, limit))
    }

    fn list(&self, query: SagaQuery) -> StoreFuture<'_, Vec<SagaSummary>> {
        through!(self, |store| store.list(query))
    }

    fn counts(&self) -> StoreFuture<'_, Vec<StatusCount>> {
        through!(self, |store| store.counts())
    }

    fn record_type(&self, shape: SagaShape) -> StoreFuture<'_, ()> {
        through!(self, |store| store.record_type(shape))
    }

    fn saga_types(&self) -> StoreFuture<'_, Vec<SagaShape>> {
        through!(self, |store| store.saga_types())
    }

    fn shared(&self) -> bool {
        self.store.shared()
    }

    fn encodes(&self) -> bool {
        self.store.encodes()
    }
}
