//! [`EngineBuilder`]: how an engine is configured.

use std::collections::HashMap;
#[cfg(feature = "sqlite")]
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::Instrument;

use super::{Engine, EngineInner, Registered, Resume, Worker};
use crate::event::EventBus;
use crate::executor;
use crate::id::IdMap;
use crate::retry::Backoff;
use crate::store::SagaRecord;
#[cfg(feature = "sqlite")]
use crate::store::{Durability, SqliteStore, StoreError};
use crate::store::{MemoryStore, SagaStore};
use crate::{BuildError, BuiltSaga, Saga, SagaDefinition, SagaKind};

/// Builds an [`Engine`].
#[must_use]
pub struct EngineBuilder {
    store: Option<Arc<dyn SagaStore>>,
    backoff: Backoff,
    event_capacity: usize,
    registry: HashMap<&'static str, Registered>,
    bus: Option<Arc<dyn crate::bus::Bus>>,
    max_recovery_attempts: u32,
    recovery_concurrency: usize,
    worker_name: Option<String>,
    lease: Duration,
    interval: Duration,
    claims: bool,
    timer_threshold: Duration,
    #[cfg(feature = "testing")]
    kit: Option<Arc<crate::testing::KitInner>>,
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

    /// Retry waits at least this long become durable timers: 1 s.
    pub const DEFAULT_TIMER_THRESHOLD: Duration = Duration::from_secs(1);

    /// An empty builder.
    pub(super) fn new() -> Self {
        EngineBuilder {
            store: None,
            backoff: Backoff::default(),
            event_capacity: 1024,
            registry: HashMap::new(),
            bus: None,
            max_recovery_attempts: 5,
            recovery_concurrency: 256,
            worker_name: None,
            lease: EngineBuilder::DEFAULT_LEASE,
            interval: EngineBuilder::DEFAULT_RENEW_INTERVAL,
            claims: true,
            timer_threshold: EngineBuilder::DEFAULT_TIMER_THRESHOLD,
            #[cfg(feature = "testing")]
            kit: None,
        }
    }

    /// How long a wait (a retry's backoff, cut short by the saga's deadline) must be to become a
    /// durable timer (default [`Self::DEFAULT_TIMER_THRESHOLD`]): the saga's wake time is in the
    /// store, the worker lets the saga go and holds no task for it, and whichever worker is live
    /// when it is due (this one, or another sharing the store) goes on with it. Shorter waits
    /// are slept in the run's task, which is cheaper than a round trip through the store; the
    /// wake time is recorded either way, so a restart never forgets it.
    ///
    /// Durable timers need a store other processes may share (SQLite; the in-memory store
    /// sleeps every wait in the task) and the saga's type registered with this engine
    /// ([`Self::register`]), with claims on: whoever goes on with the saga needs its
    /// dependencies.
    pub fn timer_threshold(mut self, threshold: Duration) -> Self {
        self.timer_threshold = threshold;
        self
    }

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

    /// A store other engines share in this process (the test kit's crashed and restarted
    /// engines).
    #[cfg(feature = "testing")]
    pub(crate) fn shared_store(mut self, store: Arc<dyn SagaStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Runs this engine's sagas under the test kit `kit`: its faults stand in for the attempts
    /// they name, and it logs every attempt (feature `testing`; see [`crate::testing`]).
    #[cfg(feature = "testing")]
    pub fn test_kit(mut self, kit: &crate::testing::TestKit) -> Self {
        self.kit = Some(Arc::clone(&kit.inner));
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
    /// `deps`; runs of `S` started on this engine without dependencies of their own get them
    /// too.
    pub fn register<S: Saga>(self, deps: impl Into<Arc<S::Deps>>) -> Self {
        let table = executor::table::<S>();
        self.register_kind::<S>(S::NAME, deps.into(), move |engine, record| {
            let ctx = executor::resumable(engine, table, record)?;
            Ok((table, ctx))
        })
    }

    /// Lets this engine resume the sagas of the built definitions named `name` (after a crash),
    /// running their steps with `deps`: `definition` builds a saga's definition again from its
    /// stored context (one reservation per item of the cart the context holds, say). That is
    /// the context as its last completed step left it, so the definition, and which part of the
    /// work each instance does, must follow from fields no step changes. A saga whose rebuilt
    /// definition has another name, other steps or other groups than it was started with, or
    /// cannot be built (an error, or a panic), is parked with the reason. Runs of definitions
    /// named `name` started on this engine without dependencies of their own get `deps` too.
    ///
    /// ```
    /// # use saga_runtime::{saga_step, Engine, SagaDefinition, StepError};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// # struct Cart { items: Vec<String> }
    /// # #[saga_step]
    /// # async fn confirm(cart: &mut Cart) -> Result<(), StepError> { Ok(()) }
    /// fn cart_saga(cart: &Cart) -> Result<SagaDefinition<Cart, ()>, saga_runtime::BuildError> {
    ///     SagaDefinition::builder("CartSaga").step::<confirm>().build()
    /// }
    ///
    /// # #[tokio::main] async fn main() -> Result<(), saga_runtime::SagaError> {
    /// let engine = Engine::builder()
    ///     .register_definition("CartSaga", (), cart_saga)
    ///     .build();
    /// engine.recover().await?;
    /// # Ok(()) }
    /// ```
    pub fn register_definition<C, D, F>(
        self,
        name: &str,
        deps: impl Into<Arc<D>>,
        definition: F,
    ) -> Self
    where
        C: crate::SagaContext,
        D: Send + Sync + 'static,
        F: Fn(&C) -> Result<SagaDefinition<C, D>, BuildError> + Send + Sync + 'static,
    {
        let name = crate::built::intern(name.to_owned());
        self.register_kind::<BuiltSaga<C, D>>(name, deps.into(), move |engine, record| {
            executor::stalled(engine, record)?;
            let ctx = executor::decode::<C>(name, record)?;
            // User code, run by the engine's background task: a panic parks the saga rather
            // than ending the task (and every lease it renews).
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| definition(&ctx)))
                .map_err(|payload| {
                    format!(
                        "building its definition again from its context {}",
                        crate::error::panicked(&*payload)
                    )
                })?;
            let table = built
                .map_err(|error| {
                    format!("its definition cannot be built again from its context: {error}")
                })?
                .table();
            if table.name != name {
                return Err(format!(
                    "the definition registered as `{name}` built one named `{}`",
                    table.name
                ));
            }
            if let Some(reason) = executor::incompatibility(record, table) {
                return Err(reason);
            }
            Ok((table, ctx))
        })
    }

    /// Registers saga type `name`: `resolve` gives an acquired saga's definition and context, or
    /// why it cannot resume here (it is then parked).
    fn register_kind<S: SagaKind>(
        mut self,
        name: &'static str,
        deps: Arc<S::Deps>,
        resolve: impl Fn(&Engine, &SagaRecord) -> Result<(executor::Table<S>, S::Context), String>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        let registered_deps: Arc<dyn std::any::Any + Send + Sync> = Arc::clone(&deps) as _;
        let resume: Resume = Arc::new(move |engine, record| {
            let (table, ctx) = resolve(engine, record)?;
            let deps = Arc::clone(&deps);
            let start: super::Start = Box::new(move |claim, record| {
                let span = executor::span(record.id, table.name);
                Box::pin(
                    async move {
                        let resumed = executor::resume::<S>(table, claim, record, ctx, deps).await;
                        if let Err(error) = resumed {
                            tracing::error!(%error, "resumed saga stopped");
                        }
                    }
                    .instrument(span),
                )
            });
            Ok(start)
        });
        self.registry.insert(
            name,
            Registered {
                resume,
                deps: registered_deps,
            },
        );
        self
    }

    /// The bus that `remote` steps send their commands on and get their replies from (see
    /// [`crate::remote`]); the participant services use the same one.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use saga_runtime::bus::MemoryBus;
    ///
    /// let engine = saga_runtime::Engine::builder().bus(Arc::new(MemoryBus::new())).build();
    /// # let _ = engine;
    /// ```
    pub fn bus(mut self, bus: Arc<dyn crate::bus::Bus>) -> Self {
        self.bus = Some(bus);
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
                encodes: store.encodes(),
                store,
                events: EventBus::new(self.event_capacity),
                backoff: self.backoff,
                running: Mutex::new(IdMap::default()),
                registry: self.registry,
                max_recovery_attempts: self.max_recovery_attempts,
                recovery_concurrency: Arc::new(Semaphore::new(self.recovery_concurrency)),
                backlog: Default::default(),
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
                timers: Default::default(),
                timer_threshold: self.timer_threshold,
                waiters: Default::default(),
                watchers: Default::default(),
                types_recorded: Default::default(),
                remote: self.bus.map(super::remote::Remote::new),
                #[cfg(feature = "testing")]
                kit: self.kit,
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
