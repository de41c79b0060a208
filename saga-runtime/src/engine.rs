//! The engine: where sagas are recorded, which saga types it can resume, how they are observed.

use std::collections::{HashMap, HashSet};
#[cfg(feature = "sqlite")]
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::client::SagaClient;
use crate::event::{EventBus, SagaEvent};
use crate::executor::{self, CancelState, Claim};
use crate::failpoint;
use crate::id::IdMap;
use crate::retry::Backoff;
use crate::store::{Acquire, CorruptRecord, MemoryStore, SagaRecord, SagaStore};
#[cfg(feature = "sqlite")]
use crate::store::{Durability, SqliteStore, StoreError};
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

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        let mut types: Vec<&str> = inner.registry.keys().copied().collect();
        types.sort_unstable();
        f.debug_struct("Engine")
            .field("worker", &inner.worker.id)
            .field("shared_store", &inner.shared)
            .field("registered", &types)
            .field("running", &self.running_count())
            .field("fenced_writes", &inner.fenced.load(Ordering::Relaxed))
            .field("lost_leases", &inner.lost.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Engine {
    fn running_count(&self) -> usize {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

pub(crate) struct EngineInner {
    pub(crate) store: Arc<dyn SagaStore>,
    /// Whether other processes may share the store (`SagaStore::shared`).
    pub(crate) shared: bool,
    pub(crate) events: EventBus,
    pub(crate) backoff: Backoff,
    pub(crate) running: Mutex<IdMap<Arc<CancelState>>>,
    registry: HashMap<&'static str, Registered>,
    pub(crate) max_recovery_attempts: u32,
    recovery_concurrency: Arc<Semaphore>,
    pub(crate) worker: Worker,
    /// Writes the store refused because another worker had taken the saga over.
    fenced: AtomicU64,
    /// Sagas a renewal found this engine no longer held.
    lost: AtomicU64,
    /// The task that renews this engine's leases and claims orphaned sagas.
    background: Mutex<Option<JoinHandle<()>>>,
    /// When the last renewal that succeeded was asked for.
    renewed: Mutex<std::time::Instant>,
}

/// Who this engine is to the store, and how it holds sagas.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    /// `{name}#{incarnation}`: the name is the worker's (stable if configured), the incarnation
    /// this engine's own.
    pub(crate) id: Arc<str>,
    /// The length of a lease.
    pub(crate) lease: Duration,
    /// How often leases are renewed and orphaned sagas looked for.
    pub(crate) interval: Duration,
    /// Whether the engine claims orphaned sagas of its registered types in the background.
    pub(crate) claims: bool,
}

impl EngineInner {
    /// The lease length for this engine's store: a store no other process shares never sees a
    /// lease expire (nothing renews it, and nobody else could take the saga).
    pub(crate) fn lease_for_store(&self) -> Duration {
        match self.shared {
            true => self.worker.lease,
            false => Duration::MAX,
        }
    }

    pub(crate) fn count_fenced(&self) {
        self.fenced.fetch_add(1, Ordering::Relaxed);
    }
}

/// A saga type this engine can resume.
struct Registered {
    steps: Vec<&'static str>,
    resume: Resume,
}

/// Resumes one claimed record of the registered type, with the registered dependencies: the run,
/// or why the saga cannot resume under this program (it is then parked).
type Resume =
    Arc<dyn Fn(&Engine, Claim, SagaRecord) -> Result<BoxFuture<'static, ()>, String> + Send + Sync>;

/// What [`Engine::recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Sagas resumed (running in the background now).
    pub resumed: Vec<SagaId>,
    /// Sagas parked, with the reason.
    pub parked: Vec<(SagaId, String)>,
    /// Records that could not even be parked (their id does not decode), with the problem.
    pub unreadable: Vec<(String, String)>,
    /// Sagas acquired and let go at once: this engine was still running them under the lease
    /// that had expired (it stalled past it); that run stops, and any worker may take them.
    pub released: Vec<SagaId>,
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
            worker_name: None,
            lease: EngineBuilder::DEFAULT_LEASE,
            interval: EngineBuilder::DEFAULT_RENEW_INTERVAL,
            claims: true,
        }
    }

    /// This engine's identity as a worker, as leases record it: `{name}#{incarnation}`.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker.id
    }

    /// How many of this engine's writes the store refused as stale: another worker had taken
    /// the saga over, or had finished it (each stopped that saga's run here).
    pub fn fenced_writes(&self) -> u64 {
        self.inner.fenced.load(Ordering::Relaxed)
    }

    /// How many running sagas a lease renewal found this engine no longer held (another worker
    /// took them over while this one could not renew: a pause, a store out of reach); each
    /// stopped at once.
    pub fn lost_leases(&self) -> u64 {
        self.inner.lost.load(Ordering::Relaxed)
    }

    /// Starts the task that renews this engine's leases and, if it has registered saga types,
    /// claims sagas that no live worker holds, unless it runs already (on this tokio runtime).
    /// Only for stores other processes share.
    pub(crate) fn ensure_background(&self) {
        if !self.inner.shared {
            return;
        }
        let mut background = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if background.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        *background = Some(runtime.spawn(background_loop(weak, self.inner.worker.interval)));
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
    pub fn saga<S: Saga>(&self) -> SagaClient<S> {
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
            .history(id, 0, usize::MAX)
            .await?
            .ok_or(SagaError::NotFound(id))
    }

    /// Takes over every saga that no live worker holds (its worker stopped, or let it go), and
    /// every saga an earlier incarnation of this worker held (same worker name), and resumes
    /// them: call it when the engine starts. The engine goes on doing this in the background for
    /// its registered saga types, for as long as it lives.
    ///
    /// Sagas are acquired in pages and at most a bounded number recover at once, so a large
    /// backlog never sits in memory whole; this returns once every saga of the backlog has been
    /// resumed or parked (resumed sagas go on in the background). A saga is parked, with a
    /// reason and a `saga parked` event, when its type is not registered, when this program's
    /// definition of its type has other steps than the one it started with, when its stored
    /// context does not decode, or when it was taken over too many times in a row without
    /// progress (it may be what crashes its workers). A bad record never stops the others.
    pub async fn recover(&self) -> Result<RecoveryReport, SagaError> {
        const PAGE: usize = 100;
        self.ensure_background();
        let mut report = RecoveryReport::default();
        loop {
            let request = Acquire::new(self.lease_request(), PAGE).reclaim_own(true);
            let page = self.inner.store.acquire(request).await?;
            let full = page.len() == PAGE;
            for record in page {
                match record {
                    Ok(record) => self.recover_one(&mut report, record, true).await?,
                    Err(corrupt) => self.park_corrupt(&mut report, corrupt).await?,
                }
            }
            if !full {
                return Ok(report);
            }
        }
    }

    /// Stops this engine's run of `id`, whose lease another acquisition replaced.
    fn stop_stale_run(&self, id: SagaId) {
        let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cancel) = running.get(&id) {
            self.inner.lost.fetch_add(1, Ordering::Relaxed);
            cancel.lose();
        }
    }

    async fn park_corrupt(
        &self,
        report: &mut RecoveryReport,
        corrupt: CorruptRecord,
    ) -> Result<(), SagaError> {
        let (Ok(id), Some(fence)) = (corrupt.id.parse::<SagaId>(), corrupt.fence) else {
            report.unreadable.push((corrupt.id, corrupt.message));
            return Ok(());
        };
        let reason = format!("its record does not decode: {}", corrupt.message);
        executor::park(self, id, &corrupt.saga_type, fence, reason.clone()).await?;
        report.parked.push((id, reason));
        Ok(())
    }

    /// Resumes (in the background) or parks one acquired saga. Without `wait_for_room`, a saga
    /// is only resumed if there is room at once (the background claimer asks for no more).
    async fn recover_one(
        &self,
        report: &mut RecoveryReport,
        record: SagaRecord,
        wait_for_room: bool,
    ) -> Result<(), SagaError> {
        let id = record.id;
        let Some(fence) = record.fence() else {
            return Ok(());
        };
        let Some(registered) = self.inner.registry.get(record.saga_type.as_str()) else {
            let reason = format!(
                "no saga type `{}` is registered with this engine (EngineBuilder::register)",
                record.saga_type
            );
            executor::park(self, id, &record.saga_type, fence, reason.clone()).await?;
            report.parked.push((id, reason));
            return Ok(());
        };
        if record.steps != registered.steps {
            let reason = format!(
                "it was started with steps {:?}, but this program's `{}` has steps {:?}",
                record.steps, record.saga_type, registered.steps
            );
            executor::park(self, id, &record.saga_type, fence, reason.clone()).await?;
            report.parked.push((id, reason));
            return Ok(());
        }
        let Some(claim) = Claim::take(self, id) else {
            // Still running here under the lease that expired (this process stalled past it):
            // that run is stale now, so it stops, and the new lease is given up rather than held
            // by nobody; whichever worker acquires the saga next resumes it.
            self.stop_stale_run(id);
            self.inner.store.release(id, fence).await?;
            report.released.push(id);
            return Ok(());
        };
        let semaphore = Arc::clone(&self.inner.recovery_concurrency);
        let permit = match wait_for_room {
            true => semaphore
                .acquire_owned()
                .await
                .expect("the semaphore is never closed"),
            false => match semaphore.try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    self.inner.store.release(id, fence).await?;
                    return Ok(());
                }
            },
        };
        failpoint::hit("mid_recovery", "saga");
        let saga_type = record.saga_type.clone();
        let resume = match (registered.resume)(self, claim, record) {
            Ok(resume) => resume,
            Err(reason) => {
                drop(permit);
                executor::park(self, id, &saga_type, fence, reason.clone()).await?;
                report.parked.push((id, reason));
                return Ok(());
            }
        };
        tokio::spawn(async move {
            resume.await;
            drop(permit);
        });
        report.resumed.push(id);
        Ok(())
    }

    /// One round of the background work: renew the leases this engine holds (a saga whose lease
    /// is gone stops here at once), then claim sagas no live worker holds.
    async fn tick(&self) {
        let asked = std::time::Instant::now();
        // The sagas this engine runs: a lease whose run ended without a last write (an error)
        // is not renewed, and expires, so that another worker takes the saga.
        let ids: Vec<SagaId> = {
            let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
            running.keys().copied().collect()
        };
        let held = self
            .inner
            .store
            .renew(&self.inner.worker.id, &ids, self.inner.worker.lease)
            .await;
        match held {
            Ok(held) => {
                *self.inner.renewed.lock().unwrap_or_else(|e| e.into_inner()) = asked;
                let held: HashSet<SagaId> = held.into_iter().map(|(id, _)| id).collect();
                let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
                for (id, cancel) in running.iter() {
                    // A saga whose lease was committed after the renewal was asked for may not
                    // be in its answer.
                    if !held.contains(id) && cancel.leased_before(asked) {
                        self.inner.lost.fetch_add(1, Ordering::Relaxed);
                        cancel.lose();
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "renewing leases failed");
                let last = *self.inner.renewed.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() > self.inner.worker.lease {
                    // Every lease this engine held may have expired and been taken by now.
                    let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
                    for cancel in running.values().filter(|c| c.leased_before(last)) {
                        self.inner.lost.fetch_add(1, Ordering::Relaxed);
                        cancel.lose();
                    }
                }
            }
        }
        if !self.inner.worker.claims || self.inner.registry.is_empty() {
            return;
        }
        let room = self.inner.recovery_concurrency.available_permits().min(100);
        if room == 0 {
            return;
        }
        let types: Vec<&str> = self.inner.registry.keys().copied().collect();
        let request = Acquire::new(self.lease_request(), room).types(types);
        let acquired = match self.inner.store.acquire(request).await {
            Ok(acquired) => acquired,
            Err(error) => {
                tracing::warn!(%error, "claiming sagas failed");
                return;
            }
        };
        let mut report = RecoveryReport::default();
        for record in acquired {
            let result = match record {
                Ok(record) => self.recover_one(&mut report, record, false).await,
                Err(corrupt) => self.park_corrupt(&mut report, corrupt).await,
            };
            if let Err(error) = result {
                tracing::warn!(%error, "resuming a claimed saga failed");
            }
        }
    }
}

/// Renews leases and claims sagas every `interval`, for as long as the engine lives.
async fn background_loop(engine: Weak<EngineInner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        Engine { inner }.tick().await;
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
    worker_name: Option<String>,
    lease: Duration,
    interval: Duration,
    claims: bool,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut types: Vec<&str> = self.registry.keys().copied().collect();
        types.sort_unstable();
        f.debug_struct("EngineBuilder")
            .field("store", &self.store.as_ref().map(|_| "set"))
            .field("registered", &types)
            .field("worker_name", &self.worker_name)
            .field("lease", &self.lease)
            .field("renew_interval", &self.interval)
            .field("claims", &self.claims)
            .field("max_recovery_attempts", &self.max_recovery_attempts)
            .field("recovery_concurrency", &self.recovery_concurrency)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// How long a worker's lease on a saga lasts unless renewed: 10 s. A worker that dies holds
    /// its sagas this long at most (plus one renewal interval) before another takes them over;
    /// a worker that cannot reach its store for this long loses them.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

    /// How often a worker renews its leases and looks for sagas no live worker holds: 2 s.
    pub const DEFAULT_RENEW_INTERVAL: Duration = Duration::from_secs(2);

    /// This worker's name, as leases record it (`{name}#{incarnation}`). A restarted worker
    /// with the same name takes back at once, in [`Engine::recover`], what its previous
    /// incarnation held, instead of waiting for those leases to expire: give each worker process
    /// a name of its own (two live processes with one name would take each other's sagas).
    /// Default: unique to the process.
    pub fn worker_id(mut self, name: impl Into<String>) -> Self {
        self.worker_name = Some(name.into());
        self
    }

    /// How long a lease lasts unless renewed (default [`Self::DEFAULT_LEASE`]). Shorter means a
    /// dead worker's sagas are taken over sooner; longer tolerates longer pauses (a stalled
    /// process, a slow store) without losing them.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }

    /// How often leases are renewed and orphaned sagas are looked for (default
    /// [`Self::DEFAULT_RENEW_INTERVAL`]); keep it well under the lease.
    pub fn renew_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Whether the engine claims, in the background, sagas of its registered types that no live
    /// worker holds (default `true`). A process that only starts sagas and looks them up can
    /// turn it off.
    pub fn claims(mut self, claims: bool) -> Self {
        self.claims = claims;
        self
    }
    /// The store sagas are recorded in. Default: a new [`MemoryStore`].
    pub fn store(mut self, store: impl SagaStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Records sagas in the SQLite file at `path` (created if needed), with full durability.
    /// (Feature `sqlite`, on by default.)
    #[cfg(feature = "sqlite")]
    pub fn sqlite(self, path: impl AsRef<Path>) -> Result<Self, StoreError> {
        self.sqlite_with(path, Durability::Full)
    }

    /// Records sagas in the SQLite file at `path` with the given durability. (Feature `sqlite`,
    /// on by default.)
    #[cfg(feature = "sqlite")]
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
        let resume: Resume = Arc::new(move |engine, claim, record| {
            let ctx = executor::resumable::<S>(engine, &record)?;
            let deps = Arc::clone(&deps);
            let span = executor::span::<S>(record.id);
            Ok(Box::pin(
                async move {
                    if let Err(error) = executor::resume::<S>(claim, record, ctx, deps).await {
                        tracing::error!(%error, "resumed saga stopped");
                    }
                }
                .instrument(span),
            ))
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
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        Engine {
            inner: Arc::new(EngineInner {
                shared: store.shared(),
                store,
                events: EventBus::new(self.event_capacity),
                backoff: self.backoff,
                running: Mutex::new(IdMap::default()),
                registry: self.registry,
                max_recovery_attempts: self.max_recovery_attempts,
                recovery_concurrency: Arc::new(Semaphore::new(self.recovery_concurrency)),
                worker: Worker {
                    id: worker_id(self.worker_name).into(),
                    lease: self.lease,
                    interval: self.interval,
                    claims: self.claims,
                },
                fenced: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                background: Mutex::new(None),
                renewed: Mutex::new(std::time::Instant::now()),
            }),
        }
    }
}

/// `{name}#{incarnation}`; the name defaults to one unique to this process.
fn worker_id(name: Option<String>) -> String {
    let name =
        name.unwrap_or_else(|| format!("worker-{}-{:04x}", std::process::id(), fastrand::u16(..)));
    format!("{name}#{:08x}", fastrand::u32(..))
}
