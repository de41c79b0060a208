//! The typed client of one saga type on one engine (what the generated `OrderSaga::run`,
//! `start`, `status`... go through), and the options of one run.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::Either;

use tokio::sync::oneshot;
use tracing::Instrument;

use crate::engine::Engine;
use crate::event::SagaEvent;
use crate::executor::Table;
use crate::executor::{self, Claim, Unrecorded};
use crate::machine::StepTable;
use crate::store::{Created, NewSaga, StoreError, StoreErrorKind, StoredContext};
use crate::{Saga, SagaError, SagaId, SagaKind, SagaOutcome, SagaStatus};

/// The outcome of a saga of type `S`.
type Outcome<S> = SagaOutcome<<S as SagaKind>::Context, <S as SagaKind>::Step>;

/// Options for one saga run, built by [`SagaClient::request`] or the generated
/// `OrderSaga::request(ctx)`.
#[must_use]
pub struct SagaRequest<S: SagaKind> {
    engine: Engine,
    table: Table<S>,
    ctx: S::Context,
    deps: Option<Arc<S::Deps>>,
    id: Option<SagaId>,
    idempotency_key: Option<String>,
    deadline: Option<Duration>,
}

impl<S: SagaKind> std::fmt::Debug for SagaRequest<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The context and the dependencies are the user's types, not required to be `Debug`.
        f.debug_struct("SagaRequest")
            .field("saga", &self.table.name)
            .field("deps", &self.deps.as_ref().map(|_| "given"))
            .field("id", &self.id)
            .field("idempotency_key", &self.idempotency_key)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<S: SagaKind> SagaRequest<S> {
    /// The dependencies handed to steps. Without them a run gets those the engine registered for
    /// the type ([`crate::EngineBuilder::register`]), else, for a `saga!` type, `Deps::default()`
    /// when the type is `Default`; otherwise they are required ([`SagaError::MissingDeps`]). (A
    /// built definition's client gets `Deps::default()` from `run(ctx)` and `start(ctx)`, which
    /// require it to be `Default`.)
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
        let name = self.table.name;
        self.deps
            .take()
            .or_else(|| self.engine.registered_deps(name))
            .or_else(S::default_deps)
            .ok_or(SagaError::MissingDeps { saga_type: name })
    }

    /// Claims the id and builds what the run records first. `Err(id)` when this engine is
    /// already running a saga with this id.
    fn prepare(self) -> Result<Result<Prepared<S>, SagaId>, SagaError> {
        let mut this = self;
        let deps = this.take_deps()?;
        let now = SystemTime::now();
        let id = this.id.unwrap_or_else(|| SagaId::at(now));
        let ctx = Arc::new(this.ctx);
        // Claimed before it is recorded, so that recovery on this engine never resumes it too.
        let Some(claim) = Claim::take(&this.engine, id) else {
            return Ok(Err(id));
        };
        this.engine.ensure_background();
        let mut saga = new_saga(
            this.table,
            id,
            now,
            StoredContext::live(Arc::clone(&ctx)),
            this.idempotency_key,
            this.deadline,
        );
        saga.lease = Some(this.engine.lease_request());
        Ok(Ok(Prepared {
            table: this.table,
            claim,
            saga,
            ctx,
            deps,
        }))
    }

    /// Records the saga and runs it to a terminal state.
    ///
    /// With an id or key that is already taken, nothing runs and the error is
    /// [`SagaError::AlreadyExists`]; use [`SagaRequest::start`] for "start unless it exists".
    ///
    /// The id is claimed when this is called; the saga is recorded, then run, when the future
    /// is awaited (dropping it unawaited records nothing).
    pub fn run(self) -> impl Future<Output = Result<Outcome<S>, SagaError>> + Send + 'static {
        // The run's future is returned as it is rather than awaited in another: it holds the
        // whole run (a few kilobytes), which every future around it would copy.
        match self.prepare() {
            Ok(Ok(prepared)) => Either::Left(prepared.run()),
            Ok(Err(id)) => Either::Right(std::future::ready(Err(SagaError::AlreadyExists { id }))),
            Err(error) => Either::Right(std::future::ready(Err(error))),
        }
    }

    /// Records the saga and runs it in the background on the current tokio runtime; returns its
    /// id once it is recorded (durably, on a durable store). A second start with the same id or
    /// key returns the first saga's id and starts nothing.
    pub async fn start(self) -> Result<SagaId, SagaError> {
        let prepared = match self.prepare()? {
            Ok(prepared) => prepared,
            Err(existing) => return Ok(existing),
        };
        let (recorded, answer) = oneshot::channel();
        prepared.start(recorded);
        answer.await.unwrap_or_else(|_| {
            Err(SagaError::Store(StoreError::new(
                StoreErrorKind::Unavailable,
                "the saga's task ended before the saga was recorded (is the runtime shutting down?)",
            )))
        })
    }

    /// Records the saga for a worker to run, and returns its id: whichever live engine sharing
    /// the store registered its type takes it (this one, if it did), within milliseconds on a
    /// store that tells workers of new sagas (PostgreSQL), else at their next look
    /// ([`crate::EngineBuilder::renew_interval`]). Nothing runs here, so no dependencies are
    /// needed; [`SagaClient::wait`] gives the outcome, from any process. A second enqueue with
    /// the same id or key returns the first saga's id and records nothing.
    ///
    /// This is how a process that only starts sagas (a web server) hands them to workers:
    ///
    /// ```
    /// # use saga_runtime::{saga, saga_step, Engine, StepError};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// # struct Ctx { done: bool }
    /// # #[saga_step]
    /// # async fn work(ctx: &mut Ctx) -> Result<(), StepError> { ctx.done = true; Ok(()) }
    /// # saga! { Demo(Ctx, ()) { work } }
    /// # #[tokio::main] async fn main() -> Result<(), saga_runtime::SagaError> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("sagas.db");
    /// // A worker: runs the sagas of the types it registered.
    /// let worker = Engine::builder().sqlite(&path)?.register::<Demo>(()).build();
    /// worker.recover().await?;
    /// // A process that only starts them:
    /// let client = Engine::builder().sqlite(&path)?.claims(false).build();
    /// let id = Demo::on(&client).request(Ctx::default()).enqueue().await?;
    /// let outcome = Demo::on(&client).wait(id).await?;
    /// assert!(outcome.is_completed() && outcome.ctx().done);
    /// # Ok(()) }
    /// ```
    pub async fn enqueue(self) -> Result<SagaId, SagaError> {
        self.engine.record_type(self.table).await?;
        let now = SystemTime::now();
        let id = self.id.unwrap_or_else(|| SagaId::at(now));
        let saga = new_saga(
            self.table,
            id,
            now,
            StoredContext::live(Arc::new(self.ctx)),
            self.idempotency_key,
            self.deadline,
        );
        match self
            .engine
            .inner
            .store
            .create(saga, &mut Vec::new())
            .await?
        {
            Created::New { .. } => {
                self.table.metrics().started();
                self.engine.wake_timers();
                Ok(id)
            }
            Created::Existing(existing) => Ok(existing.id),
        }
    }
}

/// What the store records of a new saga of definition `table`: no lease, no first writes yet.
fn new_saga<C, D>(
    table: &StepTable<C, D>,
    id: SagaId,
    now: SystemTime,
    context: StoredContext,
    idempotency_key: Option<String>,
    deadline: Option<Duration>,
) -> NewSaga {
    let mut saga = NewSaga::new(
        id,
        table.name,
        table.step_names(),
        context,
        executor::started_event(table, id, now),
    );
    saga.idempotency_key = idempotency_key;
    // A deadline past what the clock can represent is no deadline.
    saga.deadline = deadline
        .or(table.options.deadline)
        .and_then(|d| now.checked_add(d));
    saga.pivot = crate::machine::Definition::pivot(table);
    saga.groups = table.groups.to_vec();
    saga
}

/// A saga claimed by this engine, recorded by its run's first commit.
struct Prepared<S: SagaKind> {
    table: Table<S>,
    claim: Claim,
    saga: NewSaga,
    ctx: Arc<S::Context>,
    deps: Arc<S::Deps>,
}

impl<S: SagaKind> Prepared<S> {
    /// Runs it to its end (waiting for its outcome if it is let go on a durable timer).
    fn run(self) -> impl Future<Output = Result<Outcome<S>, SagaError>> + Send + 'static {
        let span = executor::span(self.saga.id, self.table.name);
        let unrecorded = Unrecorded {
            saga: self.saga,
            recorded: None,
        };
        executor::run::<S>(self.table, self.claim, self.ctx, self.deps, unrecorded).instrument(span)
    }

    /// Runs it in the background until it ends or is let go on a durable timer (nobody waits for
    /// its outcome); `recorded` is told which saga holds its id once the store answered.
    fn start(self, recorded: oneshot::Sender<Result<SagaId, SagaError>>) {
        let id = self.saga.id;
        let span = executor::span(id, self.table.name);
        let unrecorded = Unrecorded {
            saga: self.saga,
            recorded: Some(recorded),
        };
        let run = executor::start::<S>(self.table, self.claim, self.ctx, self.deps, unrecorded)
            .instrument(span);
        // Mapped, not awaited in an `async` block: the block would keep the run's future twice
        // (as what it captured and as what it awaits).
        tokio::spawn(futures_util::FutureExt::map(
            run,
            move |result| match result {
                // `start` returned the existing saga's id; nothing ran.
                Ok(_) | Err(SagaError::AlreadyExists { .. }) => {}
                Err(error) => tracing::error!(saga.id = %id, %error, "saga stopped"),
            },
        ));
    }
}

/// The typed view of one saga type on one engine. The generated `OrderSaga::on(&engine)` returns
/// one; the generated `OrderSaga::run` etc. use the one on [`Engine::global`]. It holds the engine
/// (a cheap, shared handle), so it can be cloned and moved into a spawned task.
pub struct SagaClient<S: SagaKind> {
    engine: Engine,
    /// The definition its sagas run.
    table: Table<S>,
}

impl<S: SagaKind> std::fmt::Debug for SagaClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaClient")
            .field("saga", &self.table.name)
            .field("engine", &self.engine)
            .finish()
    }
}

impl<S: SagaKind> Clone for SagaClient<S> {
    fn clone(&self) -> Self {
        SagaClient {
            engine: self.engine.clone(),
            table: self.table,
        }
    }
}

impl<S: Saga> SagaClient<S> {
    pub(crate) fn new(engine: &Engine) -> Self {
        SagaClient::with_table(engine, executor::table::<S>())
    }

    /// The client on the global engine.
    pub fn global() -> SagaClient<S> {
        Engine::global().saga()
    }
}

impl<S: SagaKind> SagaClient<S> {
    /// The client of the sagas of definition `table` on `engine`.
    pub(crate) fn with_table(engine: &Engine, table: Table<S>) -> Self {
        SagaClient {
            engine: engine.clone(),
            table,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Starts building a run with options (id, idempotency key, deadline, deps).
    pub fn request(&self, ctx: S::Context) -> SagaRequest<S> {
        SagaRequest {
            engine: self.engine.clone(),
            table: self.table,
            ctx,
            deps: None,
            id: None,
            idempotency_key: None,
            deadline: None,
        }
    }

    /// A request with no dependencies of its own: it runs with those the engine registered for
    /// the type, else `Deps::default()`.
    fn request_default(&self, ctx: S::Context) -> SagaRequest<S>
    where
        S::Deps: Default,
    {
        let mut request = self.request(ctx);
        request.deps = self
            .engine
            .registered_deps(self.table.name)
            .or_else(|| Some(Arc::default()));
        request
    }

    /// Runs a saga whose dependencies are `Default` (e.g. `()`) to a terminal state (see
    /// [`SagaRequest::run`]).
    pub fn run(
        &self,
        ctx: S::Context,
    ) -> impl Future<Output = Result<Outcome<S>, SagaError>> + Send + 'static
    where
        S::Deps: Default,
    {
        self.request_default(ctx).run()
    }

    /// Runs a saga with these dependencies to a terminal state (see [`SagaRequest::run`]).
    pub fn run_with(
        &self,
        ctx: S::Context,
        deps: impl Into<Arc<S::Deps>>,
    ) -> impl Future<Output = Result<Outcome<S>, SagaError>> + Send + 'static {
        self.request(ctx).deps(deps).run()
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
        let record = executor::load(&self.engine, self.table, id).await?;
        // Same step list as this definition, so every stored position names one of its steps.
        Ok(record
            .state
            .status
            .map(|i| executor::step_at::<S>(&self.table, i)))
    }

    /// Waits until the saga has ended and returns its outcome with its final context, wherever
    /// it runs: a run on this engine wakes the wait when it ends; a saga another process runs
    /// (sharing the store) is looked up in the store, every 50 ms at first, then less often, up to
    /// once a second. A saga that ends compensation-failed or failed is returned as such (an
    /// operator may retry it later); a parked saga is an error naming why it was parked.
    ///
    /// ```
    /// # use saga_runtime::{saga, saga_step, Engine, SagaOutcome, StepError};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// # struct Ctx { done: bool }
    /// # #[saga_step]
    /// # async fn work(ctx: &mut Ctx) -> Result<(), StepError> { ctx.done = true; Ok(()) }
    /// # saga! { Demo(Ctx, ()) { work } }
    /// # #[tokio::main] async fn main() -> Result<(), saga_runtime::SagaError> {
    /// let engine = Engine::in_memory();
    /// let sagas = Demo::on(&engine);
    /// let id = sagas.start(Ctx::default()).await?;
    /// // Later, here or in another process sharing the store:
    /// let outcome = sagas.wait(id).await?;
    /// assert!(outcome.is_completed() && outcome.ctx().done);
    /// # Ok(()) }
    /// ```
    pub async fn wait(&self, id: SagaId) -> Result<Outcome<S>, SagaError> {
        executor::waiting::outcome::<S>(&self.engine, &self.table, id).await
    }

    /// The results of saga `id`'s steps as a stream, in the order they complete, each with its
    /// typed output (see [`StepResults`](crate::StepResults)); it ends when the saga ends.
    pub fn step_results(&self, id: SagaId) -> crate::StepResults<S> {
        crate::StepResults::follow(&self.engine, self.table, id)
    }

    /// Asks saga `id` to stop at its next step boundary and compensate, wherever it runs (see
    /// [`Engine::cancel`]).
    pub async fn cancel(&self, id: SagaId) -> Result<(), SagaError> {
        self.engine.cancel(id).await
    }

    /// Retries a saga that needs attention, here, with these dependencies, and returns its
    /// outcome: a compensation-failed saga continues its compensation with the step whose
    /// compensation failed; a saga that failed after its pivot runs its failed step again. (Any
    /// process can ask for the same by id alone with [`Engine::retry`].)
    pub async fn retry(
        &self,
        id: SagaId,
        deps: impl Into<Arc<S::Deps>>,
    ) -> Result<SagaOutcome<S::Context, S::Step>, SagaError> {
        let span = executor::span(id, self.table.name);
        executor::retry::<S>(self.table, self.engine.clone(), id, deps.into())
            .instrument(span)
            .await
    }

    /// A saga's history: every event it emitted, oldest first.
    pub async fn history(&self, id: SagaId) -> Result<Vec<SagaEvent>, SagaError> {
        self.engine.history(id).await
    }
}
