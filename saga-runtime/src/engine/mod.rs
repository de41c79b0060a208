//! The engine: where sagas are recorded, which saga types it can resume, how they are observed.

mod background;
mod builder;
mod operator;
mod remote;
mod waiters;

pub use builder::EngineBuilder;
pub(crate) use remote::Exchanged;
pub(crate) use waiters::Waiters;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinHandle;

use crate::client::SagaClient;
use crate::event::{EventBus, SagaEvent};
use crate::executor::{CancelState, Claim};
use crate::id::IdMap;
use crate::retry::Backoff;
use crate::store::{SagaRecord, SagaStore};
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
    /// How many sagas this engine runs now: each holds a task and its run's state. A saga
    /// waiting on a durable timer is not one of them.
    ///
    /// ```
    /// assert_eq!(saga_runtime::Engine::in_memory().running_sagas(), 0);
    /// ```
    pub fn running_sagas(&self) -> usize {
        self.running_count()
    }

    /// How many participants' replies this engine dropped as stale: replies to an attempt that
    /// had timed out or been superseded, or to a saga that had ended.
    ///
    /// ```
    /// assert_eq!(saga_runtime::Engine::in_memory().stale_replies(), 0);
    /// ```
    pub fn stale_replies(&self) -> u64 {
        self.inner
            .remote
            .as_ref()
            .map_or(0, |remote| remote.stale())
    }

    /// Whether saga type `name` is registered with this engine.
    pub(crate) fn registers(&self, name: &str) -> bool {
        self.inner.registry.contains_key(name)
    }

    /// The dependencies this engine registered for saga type `name`, if it did (and they are
    /// `D`).
    pub(crate) fn registered_deps<D: Send + Sync + 'static>(&self, name: &str) -> Option<Arc<D>> {
        let registered = self.inner.registry.get(name)?;
        Arc::clone(&registered.deps).downcast::<D>().ok()
    }

    /// Whether this engine runs saga `id` now.
    pub(crate) fn is_running(&self, id: SagaId) -> bool {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

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
    /// Whether the store encodes what it keeps (`SagaStore::encodes`).
    pub(crate) encodes: bool,
    pub(crate) events: EventBus,
    pub(crate) backoff: Backoff,
    pub(crate) running: Mutex<IdMap<Arc<CancelState>>>,
    registry: HashMap<&'static str, Registered>,
    pub(crate) max_recovery_attempts: u32,
    recovery_concurrency: Arc<Semaphore>,
    /// Whether the last claim took as many sagas as there was room for (or found no room):
    /// more may be waiting, so a claimed saga that ends makes room and wakes the claimer.
    backlog: std::sync::atomic::AtomicBool,
    pub(crate) worker: Worker,
    /// Writes the store refused because another worker had taken the saga over.
    fenced: AtomicU64,
    /// Sagas a renewal found this engine no longer held.
    lost: AtomicU64,
    /// The task that renews this engine's leases and claims orphaned sagas.
    background: Mutex<Option<JoinHandle<()>>>,
    /// When the last renewal that succeeded was asked for.
    renewed: Mutex<std::time::Instant>,
    /// The earliest durable timer the background task knows of, and how to wake it sooner.
    pub(crate) timers: background::Timers,
    /// Waits shorter than this stay in the run's task; longer ones become durable timers.
    pub(crate) timer_threshold: Duration,
    /// Who waits for which saga's end.
    pub(crate) waiters: Waiters,
    /// Who follows a saga's steps as they are recorded (`step_results`): woken at each write.
    pub(crate) watchers: Waiters,
    /// With a bus: what remote steps need (reply routing, replies to acknowledge).
    pub(crate) remote: Option<remote::Remote>,
    /// The saga types whose shape this engine recorded in the store.
    pub(crate) types_recorded: Mutex<std::collections::HashSet<usize>>,
    /// The test kit's faults, log and crash point.
    #[cfg(feature = "testing")]
    pub(crate) kit: Option<Arc<crate::testing::KitInner>>,
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

    pub(crate) fn count_lost(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
        crate::metrics::lost_lease();
    }
}

/// A saga type this engine can resume.
struct Registered {
    resume: Resume,
    /// The registered dependencies (an `Arc<S::Deps>`), also the default of runs started here.
    deps: Arc<dyn std::any::Any + Send + Sync>,
}

/// Prepares an acquired record of the registered type for resuming, with the registered
/// dependencies: what starts its run once it is claimed here, or why the saga cannot resume under
/// this program (it is then parked, before any room is taken for it).
type Resume = Arc<dyn Fn(&Engine, &SagaRecord) -> Result<Start, String> + Send + Sync>;

/// Starts the run of a prepared record, claimed here.
type Start = Box<dyn FnOnce(Claim, SagaRecord) -> BoxFuture<'static, ()> + Send>;

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
        EngineBuilder::new()
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

    /// A saga's history: every event it emitted, oldest first.
    pub async fn history(&self, id: SagaId) -> Result<Vec<SagaEvent>, SagaError> {
        self.inner
            .store
            .history(id, 0, usize::MAX)
            .await?
            .ok_or(SagaError::NotFound(id))
    }
}
