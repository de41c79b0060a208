//! The engine: where sagas are recorded, how they are observed, and the typed client the
//! generated `OrderSaga::run`/`start`/`status` go through.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::broadcast;
use tracing::Instrument;

use crate::event::{EventBus, SagaEvent};
use crate::executor::{self, CancelState};
use crate::retry::Backoff;
use crate::store::{Created, MemoryStore, NewSaga, SagaStore, StoredContext};
use crate::{Saga, SagaError, SagaId, SagaOutcome, SagaStatus, StepEnum};

/// Runs sagas against one store and publishes their events.
///
/// Cheap to clone. [`Engine::global`] is the in-memory engine the generated `OrderSaga::run` and
/// friends use; `OrderSaga::on(&engine)` picks another.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) store: Arc<dyn SagaStore>,
    pub(crate) events: EventBus,
    pub(crate) backoff: Backoff,
    pub(crate) running: Mutex<IdMap<Arc<CancelState>>>,
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

impl Engine {
    /// An engine on a fresh in-memory store with default settings.
    pub fn in_memory() -> Self {
        Engine::builder().build()
    }

    /// Configures an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            store: None,
            backoff: Backoff::default(),
            event_capacity: 1024,
        }
    }

    /// The process-wide default engine, in memory, created on first use.
    pub fn global() -> &'static Engine {
        static GLOBAL: OnceLock<Engine> = OnceLock::new();
        GLOBAL.get_or_init(Engine::in_memory)
    }

    /// A typed client for saga type `S` on this engine.
    pub fn saga<S: Saga>(&self) -> SagaClient<'_, S> {
        SagaClient {
            engine: self,
            _saga: std::marker::PhantomData,
        }
    }

    /// Subscribes to every saga's events from now on.
    ///
    /// A subscriber that falls more than the channel capacity behind loses the oldest events
    /// (`RecvError::Lagged`); the history in the store keeps them all.
    pub fn subscribe(&self) -> broadcast::Receiver<SagaEvent> {
        self.inner.events.subscribe()
    }

    /// Asks a running saga to stop at its next step boundary and compensate.
    ///
    /// Fails when the saga has passed its pivot (it can no longer be rolled back), or is not
    /// running on this engine.
    pub fn cancel(&self, id: SagaId) -> Result<(), SagaError> {
        let state = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        match state {
            Some(state) => state.cancel(id),
            None => Err(SagaError::NotCancellable {
                id,
                reason: "it is not running on this engine",
            }),
        }
    }

    /// A saga's history: every event it emitted, oldest first.
    pub async fn history(&self, id: SagaId) -> Result<Vec<SagaEvent>, SagaError> {
        self.inner
            .store
            .history(id)
            .await?
            .ok_or(SagaError::NotFound(id))
    }
}

/// Builds an [`Engine`].
#[must_use]
pub struct EngineBuilder {
    store: Option<Arc<dyn SagaStore>>,
    backoff: Backoff,
    event_capacity: usize,
}

impl EngineBuilder {
    /// The store sagas are recorded in. Default: a new [`MemoryStore`].
    pub fn store(mut self, store: impl SagaStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Backoff cap and jitter for every step (each step sets its own base with `backoff`).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How many events a subscriber may fall behind before it loses the oldest. Default 1024.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// The engine.
    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(EngineInner {
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                events: EventBus::new(self.event_capacity),
                backoff: self.backoff,
                running: Mutex::new(IdMap::default()),
            }),
        }
    }
}

/// Options for one saga run, built by [`SagaClient::request`] or the generated
/// `OrderSaga::request(ctx)`.
#[must_use]
pub struct SagaRequest<'e, S: Saga> {
    engine: &'e Engine,
    ctx: S::Context,
    deps: Option<Arc<S::Deps>>,
    id: Option<SagaId>,
    idempotency_key: Option<String>,
    deadline: Option<Duration>,
}

impl<'e, S: Saga> SagaRequest<'e, S> {
    /// The dependencies handed to steps. Required unless `S::Deps: Default`.
    pub fn deps(mut self, deps: impl Into<Arc<S::Deps>>) -> Self {
        self.deps = Some(deps.into());
        self
    }

    /// Runs under this id. If a saga with this id exists, it is returned instead of started
    /// again.
    pub fn id(mut self, id: SagaId) -> Self {
        self.id = Some(id);
        self
    }

    /// Deduplicates on this key: starting a second saga with the same key returns the first.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// A deadline for the whole saga, overriding `#[saga(deadline = ...)]`. Past it the saga stops
    /// at the next step boundary and compensates.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    fn take_deps(&mut self) -> Result<Arc<S::Deps>, SagaError> {
        self.deps
            .take()
            .ok_or(SagaError::MissingDeps { saga_type: S::NAME })
    }

    /// Records the saga (with its "saga started" event), or finds the existing one with the same
    /// id or key. Returns what the run needs when it is new.
    async fn create(self) -> Result<Result<Prepared<S>, SagaId>, SagaError> {
        let mut this = self;
        let deps = this.take_deps()?;
        let id = this.id.unwrap_or_default();
        let ctx = Arc::new(this.ctx);
        let started = executor::started_event::<S>(id);
        let new = NewSaga {
            id,
            saga_type: S::NAME,
            steps: S::steps().iter().map(|s| s.name()).collect(),
            context: StoredContext::live(Arc::clone(&ctx)),
            idempotency_key: this.idempotency_key,
            started: started.clone(),
        };
        match this.engine.inner.store.create(new).await? {
            Created::Existing(record) => Ok(Err(record.id)),
            Created::New => Ok(Ok(Prepared {
                engine: this.engine.clone(),
                id,
                ctx,
                deps,
                deadline: this.deadline.or(S::OPTIONS.deadline),
                started,
            })),
        }
    }

    /// Runs the saga to a terminal state.
    ///
    /// With an id or key that is already taken, nothing runs and the error is
    /// [`SagaError::AlreadyExists`]; use [`SagaRequest::start`] for "start unless it exists".
    pub async fn run(self) -> Result<SagaOutcome<S::Context, S::Step>, SagaError> {
        match self.create().await? {
            Ok(prepared) => prepared.run().await,
            Err(id) => Err(SagaError::AlreadyExists { id }),
        }
    }

    /// Records the saga and runs it in the background on the current tokio runtime; returns its
    /// id once it is recorded (durably, on a durable store). A second start with the same id or
    /// key returns the first saga's id and starts nothing.
    pub async fn start(self) -> Result<SagaId, SagaError> {
        let prepared = match self.create().await? {
            Ok(prepared) => prepared,
            Err(existing) => return Ok(existing),
        };
        let id = prepared.id;
        tokio::spawn(async move {
            if let Err(error) = prepared.run().await {
                tracing::error!(saga.id = %id, %error, "saga stopped");
            }
        });
        Ok(id)
    }
}

/// A recorded saga, ready to run.
struct Prepared<S: Saga> {
    engine: Engine,
    id: SagaId,
    ctx: Arc<S::Context>,
    deps: Arc<S::Deps>,
    deadline: Option<Duration>,
    started: SagaEvent,
}

impl<S: Saga> Prepared<S> {
    async fn run(self) -> Result<SagaOutcome<S::Context, S::Step>, SagaError> {
        let span = executor::span::<S>(self.id);
        executor::run::<S>(
            self.engine,
            self.id,
            self.ctx,
            self.deps,
            self.deadline,
            self.started,
        )
        .instrument(span)
        .await
    }
}

/// The typed view of one saga type on one engine. The generated `OrderSaga::on(&engine)` returns
/// one; the generated `OrderSaga::run` etc. use the one on [`Engine::global`].
pub struct SagaClient<'e, S> {
    engine: &'e Engine,
    _saga: std::marker::PhantomData<fn() -> S>,
}

impl<S> Clone for SagaClient<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for SagaClient<'_, S> {}

impl<'e, S: Saga> SagaClient<'e, S> {
    /// The client on the global in-memory engine.
    pub fn global() -> SagaClient<'static, S> {
        Engine::global().saga()
    }

    /// The engine.
    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// Starts building a run with options (id, idempotency key, deadline, deps).
    pub fn request(&self, ctx: S::Context) -> SagaRequest<'e, S> {
        SagaRequest {
            engine: self.engine,
            ctx,
            deps: None,
            id: None,
            idempotency_key: None,
            deadline: None,
        }
    }

    fn request_default(&self, ctx: S::Context) -> SagaRequest<'e, S>
    where
        S::Deps: Default,
    {
        self.request(ctx).deps(Arc::new(S::Deps::default()))
    }

    /// Runs a saga whose dependencies are `Default` (e.g. `()`) to a terminal state.
    pub async fn run(&self, ctx: S::Context) -> Result<SagaOutcome<S::Context, S::Step>, SagaError>
    where
        S::Deps: Default,
    {
        self.request_default(ctx).run().await
    }

    /// Runs a saga with these dependencies to a terminal state.
    pub async fn run_with(
        &self,
        ctx: S::Context,
        deps: impl Into<Arc<S::Deps>>,
    ) -> Result<SagaOutcome<S::Context, S::Step>, SagaError> {
        self.request(ctx).deps(deps).run().await
    }

    /// Starts a saga whose dependencies are `Default` in the background; returns its id.
    pub async fn start(&self, ctx: S::Context) -> Result<SagaId, SagaError>
    where
        S::Deps: Default,
    {
        self.request_default(ctx).start().await
    }

    /// Starts a saga with these dependencies in the background; returns its id.
    pub async fn start_with(
        &self,
        ctx: S::Context,
        deps: impl Into<Arc<S::Deps>>,
    ) -> Result<SagaId, SagaError> {
        self.request(ctx).deps(deps).start().await
    }

    /// The saga's current status.
    pub async fn status(&self, id: SagaId) -> Result<SagaStatus<S::Step>, SagaError> {
        let record = self
            .engine
            .inner
            .store
            .load(id)
            .await?
            .ok_or(SagaError::NotFound(id))?;
        if record.saga_type != S::NAME {
            return Err(SagaError::WrongType {
                id,
                expected: S::NAME,
                actual: record.saga_type,
            });
        }
        let status = record.status;
        // A position outside the step list can only come from a record written under another
        // definition; report it rather than guess.
        if let SagaStatus::Running { step }
        | SagaStatus::Compensating { step }
        | SagaStatus::CompensationFailed { step }
        | SagaStatus::Failed { step } = status
        {
            if S::Step::from_index(step).is_none() {
                return Err(SagaError::IncompatibleDefinition {
                    id,
                    message: format!("step position {step} does not exist in `{}`", S::NAME),
                });
            }
        }
        Ok(status.map(|i| S::Step::from_index(i).expect("checked above")))
    }

    /// Waits until the saga is terminal and returns its final status.
    pub async fn wait(&self, id: SagaId) -> Result<SagaStatus<S::Step>, SagaError> {
        let mut events = self.engine.subscribe();
        loop {
            let status = self.status(id).await?;
            if status.is_terminal() {
                return Ok(status);
            }
            // Any event of this saga may be its last; a lagging receiver just re-reads the store.
            loop {
                match events.recv().await {
                    Ok(event) if event.saga_id == id => break,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return self.status(id).await,
                }
            }
        }
    }

    /// Asks a running saga to stop at its next step boundary and compensate.
    pub fn cancel(&self, id: SagaId) -> Result<(), SagaError> {
        self.engine.cancel(id)
    }

    /// Retries the compensation of a compensation-failed saga: compensation continues in order
    /// from the step that failed.
    pub async fn retry_compensation(
        &self,
        id: SagaId,
        deps: impl Into<Arc<S::Deps>>,
    ) -> Result<SagaOutcome<S::Context, S::Step>, SagaError> {
        let span = executor::span::<S>(id);
        executor::retry_compensation::<S>(self.engine.clone(), id, deps.into())
            .instrument(span)
            .await
    }

    /// A saga's history: every event it emitted, oldest first.
    pub async fn history(&self, id: SagaId) -> Result<Vec<SagaEvent>, SagaError> {
        self.engine.history(id).await
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
