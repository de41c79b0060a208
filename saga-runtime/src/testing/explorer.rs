//! The crash explorer: one run without a crash, then one per durability boundary it passed,
//! crashing there, recovering on a new engine and comparing with the run without a crash.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::crashable::Crashable;
use super::kit::TestKit;
use crate::event::{SagaEvent, SagaEventKind};
use crate::store::{SagaStore, StoreError};
use crate::{Engine, Phase, Saga, SagaId};

/// The worker name of every engine of an exploration: the engine after the crash is the
/// crashed one's restart, and takes back at once what it held.
const WORKER: &str = "crash-explorer";

/// Runs a saga once per durability boundary, crashing there, and checks that it recovers: see
/// the [module docs](crate::testing).
///
/// Each run gets fresh dependencies from `deps`, shared by the engine that crashes and the one
/// that recovers (the services a saga talks to do not crash with it), a fresh store (a SQLite
/// file in the temporary directory, with the `sqlite` feature; memory otherwise) and the same
/// context. After each crash it checks that the saga:
///
/// - ends, and with the status and the context of the run without a crash (nothing lost), or,
///   crashed before its first commit, was never recorded and nothing ran;
/// - has one end in its history, at the end; each step completed and compensated at most once;
///   compensations latest step first;
/// - handed each step the same idempotency key before and after the crash;
/// - left the world (what [`CrashExplorer::world`] reads from the dependencies) as the run
///   without a crash did: a step or compensation that ran again after the crash took effect
///   once.
///
/// The saga must be deterministic: the same context and dependencies take the same path.
///
/// ```
/// use std::sync::Mutex;
/// use saga_runtime::testing::CrashExplorer;
/// use saga_runtime::{saga, saga_step, StepCx, StepError};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// # struct Ctx;
///
/// /// The payment service: charges by idempotency key, so a charge sent twice counts once.
/// #[derive(Default)]
/// struct Payments(Mutex<std::collections::BTreeSet<String>>);
///
/// #[saga_step]
/// async fn charge(_: &mut Ctx, cx: &StepCx<Payments>) -> Result<(), StepError> {
///     cx.deps().0.lock().unwrap().insert(cx.idempotency_key());
///     Ok(())
/// }
/// saga! { Pay(Ctx, Payments) { charge } }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let explored = CrashExplorer::<Pay>::new(Ctx, Payments::default)
///     .world(|payments: &Payments| payments.0.lock().unwrap().len())
///     .explore()
///     .await
///     .unwrap_or_else(|violation| panic!("{violation}"));
/// assert!(explored.boundaries.len() >= 4, "{explored}");
/// # }
/// ```
pub struct CrashExplorer<S: Saga> {
    ctx: S::Context,
    deps: Arc<dyn Fn() -> S::Deps + Send + Sync>,
    world: Option<World<S::Deps>>,
    patience: Duration,
}

impl<S: Saga> fmt::Debug for CrashExplorer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashExplorer")
            .field("saga", &S::NAME)
            .field("world", &self.world.is_some())
            .field("patience", &self.patience)
            .finish_non_exhaustive()
    }
}

/// What the steps did to the world, read from the dependencies, in its `Debug` form.
type World<D> = Arc<dyn Fn(&D) -> String + Send + Sync>;

/// What an exploration went through: every boundary it crashed at recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exploration {
    /// The saga type.
    pub saga_type: &'static str,
    /// How the saga ended, each time (its status).
    pub outcome: String,
    /// The boundaries crashed at, in order, as `point@step`.
    pub boundaries: Vec<String>,
}

impl fmt::Display for Exploration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: crashed at each of {} durability boundaries ({}); each time it recovered to \
             `{}` with the context and effects of a run without a crash",
            self.saga_type,
            self.boundaries.len(),
            self.boundaries.join(", "),
            self.outcome
        )
    }
}

/// An invariant a crash broke, with where the crash was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// The saga type.
    pub saga_type: &'static str,
    /// The boundary crashed at (`after_compensation_effect`, ...), if the problem came after a
    /// crash (`None`: the run without one).
    pub boundary: Option<&'static str>,
    /// The step at that boundary (`saga` for the saga-level boundary).
    pub step: String,
    /// The boundary's position among those of the run without a crash (from 1), and their
    /// number.
    pub position: (usize, usize),
    /// What went wrong.
    pub problem: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.boundary {
            None => write!(f, "{} without a crash: {}", self.saga_type, self.problem),
            Some(point) => write!(
                f,
                "{}: crash at `{point}` of step `{}` (boundary {} of {}): {}",
                self.saga_type, self.step, self.position.0, self.position.1, self.problem
            ),
        }
    }
}

impl std::error::Error for Violation {}

/// How a run ended, as the invariants compare it.
#[derive(Debug)]
struct Ended {
    /// `None`: the saga was never recorded.
    status: Option<String>,
    ctx: serde_json::Value,
    world: Option<String>,
}

impl<S: Saga> CrashExplorer<S> {
    /// An explorer of saga `S` started with `ctx`, each run with dependencies made by `deps`.
    pub fn new(ctx: S::Context, deps: impl Fn() -> S::Deps + Send + Sync + 'static) -> Self {
        CrashExplorer {
            ctx,
            deps: Arc::new(deps),
            world: None,
            patience: Duration::from_secs(30),
        }
    }

    /// What the saga's steps did to the world, read from the dependencies at the end of each run
    /// and compared (by its `Debug` form) with the run without a crash: the ledger of a payment
    /// service fake, the rows of a test database. Without it, only the saga's own record is
    /// checked.
    pub fn world<W: fmt::Debug>(
        mut self,
        world: impl Fn(&S::Deps) -> W + Send + Sync + 'static,
    ) -> Self {
        self.world = Some(Arc::new(move |deps| format!("{:?}", world(deps))));
        self
    }

    /// How long a recovered saga may take to end (default 30 s).
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Runs the saga without a crash, then once per boundary it passed, crashing there; the
    /// first invariant broken, or what was explored.
    pub async fn explore(self) -> Result<Exploration, Violation> {
        // One id for every run (each has its own store), so that idempotency keys, and what the
        // steps derive from them, are the same in all.
        let id = SagaId::new();
        let (reference, boundaries) = self.reference(id).await?;
        let total = boundaries.len();
        for (index, (point, step)) in boundaries.iter().enumerate() {
            let violation = |problem: String| Violation {
                saga_type: S::NAME,
                boundary: Some(point),
                step: step.clone(),
                position: (index + 1, total),
                problem,
            };
            self.crash_at(id, index, (point, step), &reference)
                .await
                .map_err(violation)?;
        }
        Ok(Exploration {
            saga_type: S::NAME,
            outcome: reference.status.unwrap_or_default(),
            boundaries: boundaries
                .iter()
                .map(|(point, step)| format!("{point}@{step}"))
                .collect(),
        })
    }

    /// The run without a crash, and the boundaries it passed.
    async fn reference(
        &self,
        id: SagaId,
    ) -> Result<(Ended, Vec<(&'static str, String)>), Violation> {
        let violation = |problem: String| Violation {
            saga_type: S::NAME,
            boundary: None,
            step: String::new(),
            position: (0, 0),
            problem,
        };
        let scratch = Scratch::new().map_err(|e| violation(e.to_string()))?;
        let deps = Arc::new((self.deps)());
        let kit = TestKit::crashing_at(None);
        let engine = self.engine(Arc::clone(&scratch.store), &kit, &deps);
        engine
            .saga::<S>()
            .request(self.ctx.clone())
            .id(id)
            .deps(Arc::clone(&deps))
            .run()
            .await
            .map(drop)
            .map_err(|e| violation(format!("the saga did not run: {e}")))?;
        let ended = self.ended(&engine, id, &deps).await.map_err(violation)?;
        check_record::<S>(&engine, id, &kit)
            .await
            .map_err(violation)?;
        Ok((ended, kit.boundaries()))
    }

    /// One run crashed at boundary `index`, recovered, and checked against `reference`.
    async fn crash_at(
        &self,
        id: SagaId,
        index: usize,
        expected: (&'static str, &String),
        reference: &Ended,
    ) -> Result<(), String> {
        let scratch = Scratch::new().map_err(|e| e.to_string())?;
        let deps = Arc::new((self.deps)());
        let kit = TestKit::crashing_at(Some(index));
        let crashing = Crashable {
            store: Arc::clone(&scratch.store),
            dead: Arc::clone(&kit.inner.dead),
        };
        let engine = self.engine(Arc::new(crashing), &kit, &deps);
        let run = engine
            .saga::<S>()
            .request(self.ctx.clone())
            .id(id)
            .deps(Arc::clone(&deps))
            .run()
            .await;
        let passed = kit.boundaries();
        match passed.get(index) {
            Some((point, step)) if (*point, step) == expected && run.is_err() => {}
            _ => {
                return Err(format!(
                    "this run did not reach that boundary where the run without a crash did \
                     (it passed {passed:?}): the saga must take the same path every time"
                ))
            }
        }
        // The process is gone; its restart (same worker name) takes back what it held.
        drop(engine);
        let restarted = self.engine(Arc::clone(&scratch.store), &kit, &deps);
        restarted
            .recover()
            .await
            .map_err(|e| format!("recovery failed: {e}"))?;
        let ended = self.ended(&restarted, id, &deps).await?;
        if ended.status.is_none() {
            // Crashed before its first commit: never acknowledged, so nothing may have run.
            let untouched = self.world.as_ref().map(|w| w(&(self.deps)()));
            if ended.world != untouched || !kit.calls().is_empty() {
                return Err(format!(
                    "the saga was never recorded, yet steps ran: {:?}",
                    kit.succeeded()
                ));
            }
            return Ok(());
        }
        if ended.status != reference.status {
            return Err(format!(
                "it ended `{}` after recovering, `{}` without a crash",
                ended.status.unwrap_or_default(),
                reference.status.clone().unwrap_or_default()
            ));
        }
        if ended.ctx != reference.ctx {
            return Err(format!(
                "its final context differs from a run without a crash: {} instead of {}",
                ended.ctx, reference.ctx
            ));
        }
        check_record::<S>(&restarted, id, &kit).await?;
        if ended.world != reference.world {
            return Err(format!(
                "the world differs from a run without a crash: {} instead of {}. `{}` ran again \
                 after the crash and took effect twice: make it idempotent on its key \
                 (StepCx::idempotency_key)",
                ended.world.unwrap_or_default(),
                reference.world.clone().unwrap_or_default(),
                culprit::<S>(expected.0, expected.1)
            ));
        }
        Ok(())
    }

    /// An engine of the exploration on `store`, with `kit`, running `S` with `deps`.
    fn engine(&self, store: Arc<dyn SagaStore>, kit: &TestKit, deps: &Arc<S::Deps>) -> Engine {
        Engine::builder()
            .shared_store(store)
            .worker_id(WORKER)
            .test_kit(kit)
            .register::<S>(Arc::clone(deps))
            .build()
    }

    /// How saga `id` ended: its status and context once it is terminal (waiting for it), or
    /// `None` if it was never recorded; and the world.
    async fn ended(&self, engine: &Engine, id: SagaId, deps: &S::Deps) -> Result<Ended, String> {
        let recorded = engine
            .inner
            .store
            .load(id)
            .await
            .map_err(|e| format!("cannot read the saga: {e}"))?;
        if recorded.is_none() {
            return Ok(Ended {
                status: None,
                ctx: serde_json::Value::Null,
                world: self.world.as_ref().map(|w| w(deps)),
            });
        }
        let outcome = tokio::time::timeout(self.patience, engine.saga::<S>().wait(id))
            .await
            .map_err(|_| format!("it did not end within {:?} of recovering", self.patience))?
            .map_err(|e| format!("cannot wait for it: {e}"))?;
        let status = engine
            .saga::<S>()
            .status(id)
            .await
            .map_err(|e| format!("cannot read its status: {e}"))?;
        let ctx = serde_json::to_value(outcome.ctx())
            .map_err(|e| format!("its context does not serialize: {e}"))?;
        Ok(Ended {
            status: Some(status.name().to_owned()),
            ctx,
            // Read once the saga ended.
            world: self.world.as_ref().map(|w| w(deps)),
        })
    }
}

/// What ran again after a crash at `point` of `step`: the step, or its compensation.
fn culprit<S: Saga>(point: &str, step: &str) -> String {
    let description = S::description();
    let declared = description.steps.iter().find(|s| s.name == step);
    match (point.contains("compensation"), declared) {
        (true, Some(s)) => s.compensation.unwrap_or(step).to_owned(),
        _ => step.to_owned(),
    }
}

/// Checks saga `id`'s history and the keys its steps were handed.
async fn check_record<S: Saga>(engine: &Engine, id: SagaId, kit: &TestKit) -> Result<(), String> {
    let history = engine
        .history(id)
        .await
        .map_err(|e| format!("cannot read its history: {e}"))?;
    check_history::<S>(&history)?;
    for call in kit.calls().iter().filter(|c| c.saga == id) {
        let expected = match call.phase {
            Phase::Action => format!("{id}:{}", call.step),
            Phase::Compensation => format!("{id}:{}:compensate", call.step),
        };
        if call.key != expected {
            return Err(format!(
                "attempt {} of `{}` was handed the key `{}`, not `{expected}`",
                call.attempt, call.step, call.key
            ));
        }
    }
    Ok(())
}

/// One end, last; each step completed and compensated at most once; compensations latest step
/// first.
fn check_history<S: Saga>(history: &[SagaEvent]) -> Result<(), String> {
    let position = |name: &str| {
        S::steps()
            .iter()
            .position(|s| s.name() == name || s.description.fallback == Some(name))
    };
    let is_end = |e: &SagaEvent| {
        matches!(
            e.kind,
            SagaEventKind::SagaCompleted { .. }
                | SagaEventKind::SagaCompensated { .. }
                | SagaEventKind::SagaFailed { .. }
        )
    };
    let ends = history.iter().filter(|e| is_end(e)).count();
    let last_is_end = history.last().is_some_and(is_end);
    if ends != 1 || !last_is_end {
        return Err(format!(
            "its history has {ends} ends, and the last entry is {}one",
            if last_is_end { "" } else { "not " }
        ));
    }
    let mut completed = Vec::new();
    let mut compensated: Vec<usize> = Vec::new();
    for event in history {
        match &event.kind {
            SagaEventKind::StepCompleted { step, .. } => {
                if completed.contains(step) {
                    return Err(format!("`{step}` completed twice in its history"));
                }
                completed.push(step.clone());
            }
            SagaEventKind::StepCompensated { step, .. } => {
                let at = position(step).unwrap_or(usize::MAX);
                if compensated.contains(&at) {
                    return Err(format!("`{step}` was compensated twice in its history"));
                }
                if compensated.last().is_some_and(|&last| at > last) {
                    return Err(format!(
                        "`{step}` was compensated after a later step's compensation"
                    ));
                }
                compensated.push(at);
            }
            _ => {}
        }
    }
    Ok(())
}

/// A store for one run, and its file, removed at the end.
struct Scratch {
    store: Arc<dyn SagaStore>,
    #[cfg(feature = "sqlite")]
    path: std::path::PathBuf,
}

impl Scratch {
    #[cfg(feature = "sqlite")]
    fn new() -> Result<Self, StoreError> {
        use crate::store::{Durability, SqliteStore};
        let path = std::env::temp_dir().join(format!("saga-crash-explorer-{}.db", SagaId::new()));
        // The crashes are in process: nothing needs to reach the disk.
        let store = SqliteStore::open_with(&path, Durability::Off)?;
        Ok(Scratch {
            store: Arc::new(store),
            path,
        })
    }

    #[cfg(not(feature = "sqlite"))]
    fn new() -> Result<Self, StoreError> {
        Ok(Scratch {
            store: Arc::new(crate::store::MemoryStore::new()),
        })
    }
}

#[cfg(feature = "sqlite")]
impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}
