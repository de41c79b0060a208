//! The engine: where sagas are recorded, which saga types it can resume, how they are observed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, Semaphore};
use tracing::Instrument;

use crate::client::SagaClient;
use crate::event::{EventBus, SagaEvent};
use crate::executor::{self, CancelState, Claim};
use crate::failpoint;
use crate::id::IdMap;
use crate::retry::Backoff;
use crate::store::{Durability, MemoryStore, SagaRecord, SagaStore, SqliteStore, StoreError};
use crate::{Saga, SagaError, SagaId};

/// Runs sagas against one store and publishes their events.
///
/// Cheap to clone. [`Engine::global`] is the engine the generated `OrderSaga::run` and friends
/// use (in memory unless [`Engine::make_global`] chose another); `OrderSaga::on(&engine)` picks
/// another.
///
/// A durable engine in one line, resuming whatever a previous process left unfinished:
///
/// ```no_run
/// # use saga_runtime::Engine;
/// # async fn demo() -> Result<(), saga_runtime::SagaError> {
/// let engine = Engine::builder().sqlite("orders.db")?/* .register::<OrderSaga>(services) */.build();
/// engine.recover().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) store: Arc<dyn SagaStore>,
    pub(crate) events: EventBus,
    pub(crate) backoff: Backoff,
    pub(crate) running: Mutex<IdMap<Arc<CancelState>>>,
    registry: HashMap<&'static str, Registered>,
    pub(crate) max_recovery_attempts: u32,
    recovery_concurrency: Arc<Semaphore>,
}

/// A saga type this engine can resume.
struct Registered {
    steps: Vec<&'static str>,
    resume: Resume,
}

/// Resumes one claimed record of the registered type, with the registered dependencies.
type Resume = Arc<dyn Fn(Claim, SagaRecord) -> BoxFuture<'static, ()> + Send + Sync>;

/// What [`Engine::recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sagas resumed (running in the background now).
    pub resumed: Vec<SagaId>,
    /// Sagas parked, with the reason.
    pub parked: Vec<(SagaId, String)>,
    /// Records that could not even be parked (their id does not decode), with the problem.
    pub unreadable: Vec<(String, String)>,
}

static GLOBAL: OnceLock<Engine> = OnceLock::new();

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
            registry: HashMap::new(),
            max_recovery_attempts: 5,
            recovery_concurrency: 256,
        }
    }

    /// The process-wide engine: the one given to [`Engine::make_global`], else an in-memory
    /// engine created on first use.
    pub fn global() -> &'static Engine {
        GLOBAL.get_or_init(Engine::in_memory)
    }

    /// Makes this engine the one [`Engine::global`] returns, so that the generated
    /// `OrderSaga::run`, `start` and `status` use it. Fails (returning the engine) once the
    /// global engine has been used or set.
    pub fn make_global(self) -> Result<(), Engine> {
        GLOBAL.set(self)
    }

    /// A typed client for saga type `S` on this engine.
    pub fn saga<S: Saga>(&self) -> SagaClient<'_, S> {
        SagaClient::new(self)
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

    /// Resumes every saga the store holds that is not terminal and not running here: the sagas
    /// of a worker that stopped mid-run. Call it when the engine starts (and whenever else is
    /// useful: it is idempotent).
    ///
    /// Sagas are read in pages and at most a bounded number recover at once, so a large backlog
    /// never sits in memory whole; this returns once every saga of the backlog has been resumed
    /// or parked (resumed sagas go on in the background). A saga is parked, with a reason and a
    /// `saga parked` event, when its type is not registered, when this program's definition of
    /// its type has other steps than the one it started with, when its stored context does not
    /// decode, or when it was resumed too many times in a row without progress (it may be what
    /// crashes the worker). A bad record never stops the others.
    pub async fn recover(&self) -> Result<RecoveryReport, SagaError> {
        const PAGE: usize = 100;
        let mut report = RecoveryReport::default();
        let mut after = None;
        loop {
            let page = self.inner.store.unfinished(after, PAGE).await?;
            let full = page.len() == PAGE;
            for record in page {
                let record = match record {
                    Ok(record) => record,
                    Err(corrupt) => {
                        let Ok(id) = corrupt.id.parse::<SagaId>() else {
                            report.unreadable.push((corrupt.id, corrupt.message));
                            continue;
                        };
                        after = Some(id);
                        let reason = format!("its record does not decode: {}", corrupt.message);
                        self.park(&mut report, id, &corrupt.saga_type, reason)
                            .await?;
                        continue;
                    }
                };
                after = Some(record.id);
                self.recover_one(&mut report, record).await?;
            }
            if !full {
                return Ok(report);
            }
        }
    }

    async fn recover_one(
        &self,
        report: &mut RecoveryReport,
        record: SagaRecord,
    ) -> Result<(), SagaError> {
        let id = record.id;
        let Some(registered) = self.inner.registry.get(record.saga_type.as_str()) else {
            let reason = format!(
                "no saga type `{}` is registered with this engine (EngineBuilder::register)",
                record.saga_type
            );
            return self.park(report, id, &record.saga_type, reason).await;
        };
        if record.steps != registered.steps {
            let reason = format!(
                "it was started with steps {:?}, but this program's `{}` has steps {:?}",
                record.steps, record.saga_type, registered.steps
            );
            return self.park(report, id, &record.saga_type, reason).await;
        }
        // Claimed before anything else: a saga this engine is running is not recovered.
        let Some(claim) = Claim::take(self, id) else {
            return Ok(());
        };
        let permit = Arc::clone(&self.inner.recovery_concurrency)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        failpoint::hit("mid_recovery", "saga");
        let resume = (registered.resume)(claim, record);
        tokio::spawn(async move {
            resume.await;
            drop(permit);
        });
        report.resumed.push(id);
        Ok(())
    }

    async fn park(
        &self,
        report: &mut RecoveryReport,
        id: SagaId,
        saga_type: &str,
        reason: String,
    ) -> Result<(), SagaError> {
        executor::park(self, id, saga_type, reason.clone()).await?;
        report.parked.push((id, reason));
        Ok(())
    }
}

/// Builds an [`Engine`].
#[must_use]
pub struct EngineBuilder {
    store: Option<Arc<dyn SagaStore>>,
    backoff: Backoff,
    event_capacity: usize,
    registry: HashMap<&'static str, Registered>,
    max_recovery_attempts: u32,
    recovery_concurrency: usize,
}

impl EngineBuilder {
    /// The store sagas are recorded in. Default: a new [`MemoryStore`].
    pub fn store(mut self, store: impl SagaStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Records sagas in the SQLite file at `path` (created if needed), with full durability.
    pub fn sqlite(self, path: impl AsRef<Path>) -> Result<Self, StoreError> {
        self.sqlite_with(path, Durability::Full)
    }

    /// Records sagas in the SQLite file at `path` with the given durability.
    pub fn sqlite_with(
        self,
        path: impl AsRef<Path>,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        Ok(self.store(SqliteStore::open_with(path, durability)?))
    }

    /// Lets this engine resume sagas of type `S` (after a crash), running their steps with
    /// `deps`.
    pub fn register<S: Saga>(mut self, deps: impl Into<Arc<S::Deps>>) -> Self {
        let deps: Arc<S::Deps> = deps.into();
        let resume: Resume = Arc::new(move |claim, record| {
            let deps = Arc::clone(&deps);
            let span = executor::span::<S>(record.id);
            Box::pin(
                async move {
                    if let Err(error) = executor::resume::<S>(claim, record, deps).await {
                        tracing::error!(%error, "resumed saga stopped");
                    }
                }
                .instrument(span),
            )
        });
        let steps = S::steps().iter().map(|s| s.name()).collect();
        self.registry.insert(S::NAME, Registered { steps, resume });
        self
    }

    /// How many times in a row recovery resumes a saga that makes no progress before parking it.
    /// Default 5.
    pub fn max_recovery_attempts(mut self, attempts: u32) -> Self {
        self.max_recovery_attempts = attempts;
        self
    }

    /// How many recovered sagas may run at once while [`Engine::recover`] works through a
    /// backlog. Default 256.
    pub fn recovery_concurrency(mut self, sagas: usize) -> Self {
        self.recovery_concurrency = sagas.max(1);
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
                registry: self.registry,
                max_recovery_attempts: self.max_recovery_attempts,
                recovery_concurrency: Arc::new(Semaphore::new(self.recovery_concurrency)),
            }),
        }
    }
}
