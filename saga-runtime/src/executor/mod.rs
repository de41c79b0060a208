//! The executor: drives one saga as a loop around the decision (see [`crate::machine`]): decide,
//! record the intent, perform, record the result, until the saga is terminal.

mod attempt;
mod cancel;
mod commit;
mod exchange;
mod finish;
mod group;
mod recovery;
mod spare;
mod typed;
pub(crate) mod waiting;

pub(crate) use attempt::guarded_within;
pub(crate) use typed::{incompatibility, load, retry};

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::oneshot;
use tokio::time::Instant;

pub(crate) use cancel::CancelState;
pub(crate) use recovery::{decode, park, resumable, resume, stalled};

use crate::engine::Engine;
use crate::event::{SagaEvent, SagaEventKind, StepName};
use crate::machine::{decide, Change, Decision, SagaState, StepFailed, StepTable, Stop, Write};
use crate::outcome::RollbackCause;
use crate::store::{Fence, NewSaga, SagaSlot};
use crate::{Saga, SagaError, SagaId, SagaKind, SagaOutcome, StepEnum};

/// The tracing span of one saga of type `name`.
pub(crate) fn span(id: SagaId, name: &'static str) -> tracing::Span {
    tracing::info_span!("saga", saga.id = %id, saga.r#type = name)
}

type Outcome<S> = SagaOutcome<<S as SagaKind>::Context, <S as SagaKind>::Step>;

/// The definition a saga of kind `S` runs.
pub(crate) type Table<S> = &'static StepTable<<S as SagaKind>::Context, <S as SagaKind>::Deps>;

/// One saga being executed.
pub(crate) struct Run<S: SagaKind> {
    engine: Engine,
    id: SagaId,
    deps: Arc<S::Deps>,
    table: Table<S>,
    /// The last committed context: each attempt starts from a copy of it.
    committed: Arc<S::Context>,
    /// The saga's state as the store has it once the pending writes are flushed.
    state: SagaState,
    /// The lease token this run writes under and the version it last wrote.
    fence: Fence,
    /// Where its writes go when the store has a line to the saga (see `SagaStore::slot`);
    /// otherwise they go through the store.
    slot: Option<Arc<dyn SagaSlot>>,
    cancel: Arc<CancelState>,
    /// When the run started, on tokio's clock, and by the wall clock: the run's clock is the
    /// second advanced by the first (see [`Run::now`]).
    started: Instant,
    started_wall: SystemTime,
    /// This run's clock when it last looked ([`Run::tick`]): the time of what it records until it
    /// looks again.
    clock: SystemTime,
    /// Transitions recorded but not yet handed to the store: flushed before user code runs,
    /// before a wait, and at the end (see the store module).
    pending: Vec<Write>,
    /// A new saga not in the store yet: the first flush records it.
    unrecorded: Option<Box<Unrecorded>>,
    /// The members of a parallel group at work (boxed: most sagas have no group).
    group: Option<Box<group::Group<S::Context>>>,
}

/// The run holds its saga's claim for its whole life (its engine, id and cancellation state are
/// the claim's, taken over rather than kept twice): dropping it takes the saga out of the running
/// set.
impl<S: SagaKind> Drop for Run<S> {
    fn drop(&mut self) {
        release(&self.engine, self.id);
    }
}

/// A saga claimed by this engine: in its running set from before it is recorded (or resumed)
/// until its run ends, so that this engine never runs a saga twice, and so that lease renewal
/// knows what it holds.
pub(crate) struct Claim {
    /// `None` once a run took the claim over.
    engine: Option<Engine>,
    id: SagaId,
    cancel: Arc<CancelState>,
}

impl Claim {
    /// Claims `id`, unless this engine is already running it.
    pub(crate) fn take(engine: &Engine, id: SagaId) -> Option<Claim> {
        let cancel = Arc::new(CancelState::default());
        let mut running = engine
            .inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if running.contains_key(&id) {
            return None;
        }
        running.insert(id, cancel.clone());
        Some(Claim {
            engine: Some(engine.clone()),
            id,
            cancel,
        })
    }

    /// Its parts, for a run that takes the claim over (and releases it when dropped).
    fn into_parts(mut self) -> (Engine, SagaId, Arc<CancelState>) {
        let engine = self.engine.take().expect("a claim is taken over once");
        (engine, self.id, self.cancel.clone())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(engine) = &self.engine {
            release(engine, self.id);
        }
    }
}

/// Takes saga `id` out of `engine`'s running set: its claim (or the run that took it over) ends.
fn release(engine: &Engine, id: SagaId) {
    // Replies its run recorded but did not commit come again to whoever resumes the saga.
    if let Some(remote) = &engine.inner.remote {
        remote.forget(id);
    }
    engine
        .inner
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    // The run ended, or let the saga go: whoever waits for it looks again.
    engine.inner.waiters.wake(id);
}

/// A new saga, recorded by its run's first flush together with the transitions before it (the
/// first step's intent): starting a saga then costs no commit of its own, and it is still
/// recorded before any of its steps runs.
pub(crate) struct Unrecorded {
    pub(crate) saga: NewSaga,
    /// Told, once the store answered, which saga holds this id (or idempotency key): this one,
    /// or one recorded before.
    pub(crate) recorded: Option<oneshot::Sender<Result<SagaId, SagaError>>>,
}

/// The "saga started" event, recorded with the saga itself.
pub(crate) fn started_event<C, D>(
    table: &StepTable<C, D>,
    id: SagaId,
    at: SystemTime,
) -> SagaEvent {
    let steps = table
        .steps
        .iter()
        .map(|s| Cow::Borrowed(s.name()))
        .collect();
    event(table.name, id, at, SagaEventKind::SagaStarted { steps })
}

/// An event of saga `id` of type `name`.
pub(crate) fn event(
    name: &'static str,
    id: SagaId,
    at: SystemTime,
    kind: SagaEventKind,
) -> SagaEvent {
    SagaEvent {
        saga_id: id,
        saga_type: Cow::Borrowed(name),
        at,
        kind,
    }
}

/// The definition `saga!` generated for `S`.
pub(crate) fn table<S: Saga>() -> &'static StepTable<S::Context, S::Deps> {
    S::table()
}

/// Records a new saga and runs it to a terminal state; if it is let go on a durable timer, waits
/// for its outcome (wherever it then runs). With an id or idempotency key already taken, nothing
/// runs and the error is [`SagaError::AlreadyExists`].
///
/// The run is built before its future, not in it: an `async fn` keeps its parameters (the parts
/// the run is built from) for as long as it lives, which cost every saga in flight half a
/// kilobyte.
pub(crate) fn run<S: SagaKind>(
    table: Table<S>,
    claim: Claim,
    ctx: Arc<S::Context>,
    deps: Arc<S::Deps>,
    unrecorded: Unrecorded,
) -> impl Future<Output = Result<Outcome<S>, SagaError>> + Send + 'static {
    let mut run = Run::<S>::recording(table, claim, ctx, deps, unrecorded);
    // One future, not a run's future inside a waiting one: every future wrapped around a run's
    // copies it when it moves.
    async move {
        if let Some(outcome) = run.drive().await? {
            return Ok(outcome);
        }
        let (engine, id, table) = (run.engine.clone(), run.id, run.table);
        // Not kept while the saga waits.
        drop(run);
        // Boxed: only a saga let go on a durable timer waits here, and its future would
        // otherwise sit beside the run's in every saga's.
        Box::pin(waiting::outcome::<S>(&engine, &table, id)).await
    }
}

/// Records a new saga and runs it until it ends or is let go on a durable timer; nobody waits
/// for its outcome. Built before its future, as [`run`].
pub(crate) fn start<S: SagaKind>(
    table: Table<S>,
    claim: Claim,
    ctx: Arc<S::Context>,
    deps: Arc<S::Deps>,
    unrecorded: Unrecorded,
) -> impl Future<Output = Result<(), SagaError>> + Send + 'static {
    let mut run = Run::<S>::recording(table, claim, ctx, deps, unrecorded);
    async move { run.drive().await.map(drop) }
}

impl<S: SagaKind> Run<S> {
    /// The run of a new saga, which its first flush records.
    fn recording(
        table: Table<S>,
        claim: Claim,
        ctx: Arc<S::Context>,
        deps: Arc<S::Deps>,
        unrecorded: Unrecorded,
    ) -> Self {
        let state = unrecorded.saga.initial_state();
        let mut run = Run::new(table, claim, ctx, deps, state, Fence::default());
        run.unrecorded = Some(Box::new(unrecorded));
        run
    }

    fn new(
        table: Table<S>,
        claim: Claim,
        ctx: Arc<S::Context>,
        deps: Arc<S::Deps>,
        state: SagaState,
        fence: Fence,
    ) -> Self {
        let (engine, id, cancel) = claim.into_parts();
        if fence.token != 0 && engine.inner.shared {
            // Resumed or reopened: the store committed the lease before this run was made (only
            // leases on a shared store are renewed, and can be lost).
            cancel.leased();
        }
        let wall = SystemTime::now();
        Run {
            engine,
            id,
            deps,
            table,
            committed: ctx,
            state,
            fence,
            slot: None,
            cancel,
            started: Instant::now(),
            started_wall: wall,
            clock: wall,
            pending: Vec::new(),
            unrecorded: None,
            group: None,
        }
    }

    /// The loop: decide, then do what was decided, until the saga is terminal (its outcome) or
    /// let go on a durable timer (`None`).
    async fn drive(&mut self) -> Result<Option<Outcome<S>>, SagaError> {
        self.note_pivot();
        // The clock was looked at when the run was made (nothing awaited since), then is by
        // whatever takes time (an attempt, a wait) when it ends: a decision that follows a
        // record-only one sees the same time, and no time it could act on passed in between.
        loop {
            // Whether a cancellation was asked for at all: past the pivot the decision records
            // it as ignored rather than acting on it.
            let cancelled = self.cancel.was_requested();
            let decision = decide(
                self.table,
                &self.state,
                self.clock,
                cancelled,
                self.at_work(),
            );
            // A member of a parallel group waits for its siblings' intents, then they start
            // together.
            if let Decision::Run(task) = decision {
                if self.concurrent(task) {
                    self.intend_member(task)?;
                    continue;
                }
            }
            if self.launching() {
                self.launch().await?;
                continue;
            }
            match decision {
                Decision::Run(task) => {
                    if !self.attempt(task).await? {
                        return Ok(None);
                    }
                }
                // Boxed: only a parallel group's members are joined, and the join's future
                // would otherwise take room in every saga's.
                Decision::Busy => Box::pin(self.join(None)).await?,
                Decision::Wait(until) if !self.at_work().is_empty() => {
                    Box::pin(self.join(Some(until))).await?
                }
                Decision::Wait(until) => {
                    if !self.wait(until).await? {
                        return Ok(None);
                    }
                }
                Decision::Stop(stop) => {
                    let Stop {
                        step,
                        attempt,
                        error,
                        cause,
                    } = *stop;
                    let name = self.table.def(step, self.fallback_active(step)).name();
                    self.record(
                        SagaEventKind::StepFailed {
                            step: name.into(),
                            attempt,
                            error: error.clone(),
                        },
                        Change::StepFailed(Box::new(StepFailed {
                            stopped: Some(cause),
                            ..StepFailed::new(step, error)
                        })),
                        None,
                    );
                }
                Decision::StartFallback(step) => {
                    let def = self.table.def(step, false);
                    let fallback = self.table.def(step, true);
                    self.record(
                        SagaEventKind::FallbackStarted {
                            step: def.name().into(),
                            fallback: fallback.name().into(),
                        },
                        Change::FallbackStarted { step },
                        None,
                    );
                }
                Decision::StartRollback(cause) => {
                    let reason = reason(self.table, &cause);
                    self.record(
                        SagaEventKind::CompensationStarted { reason },
                        Change::RollbackStarted(cause),
                        None,
                    );
                    self.set_status(finish::pending_status(self.table, &self.state));
                }
                Decision::IgnoreStop { cancelled, reason } => self.record(
                    SagaEventKind::StopIgnored {
                        cancelled,
                        reason: reason.into(),
                    },
                    Change::StopIgnored { cancelled },
                    None,
                ),
                Decision::Complete => return self.complete().await.map(Some),
                Decision::Fail { step, error } => return self.fail(step, *error).await.map(Some),
                Decision::Compensated => return self.compensated().await.map(Some),
                Decision::CompensationFailed => return self.compensation_failed().await.map(Some),
                Decision::Done => return self.outcome_of_terminal().map(Some),
            }
        }
    }

    /// Whether the activity of `step` is its fallback.
    fn fallback_active(&self, step: usize) -> bool {
        self.state
            .active
            .iter()
            .any(|a| a.step == step && a.fallback)
    }

    /// The time by this run's clock: the wall clock when it started, advanced by tokio's clock
    /// since. Waits and deadlines are then measured on tokio's clock (which tests can pause and
    /// advance), while what is recorded stays wall-clock time, meaningful to other processes.
    fn now(&self) -> SystemTime {
        self.started_wall + self.started.elapsed()
    }

    /// How long the run has taken, as of its last look at the clock.
    fn elapsed(&self) -> std::time::Duration {
        self.clock
            .duration_since(self.started_wall)
            .unwrap_or_default()
    }

    /// Looks at the clock: the time now, which is also the time of what is recorded until the
    /// next look.
    fn tick(&mut self) -> SystemTime {
        self.clock = self.now();
        self.clock
    }

    /// `time` by this run's clock as an instant of tokio's clock.
    fn instant(&self, time: SystemTime) -> Instant {
        match time.duration_since(self.started_wall) {
            Ok(after) => self.started + after,
            Err(_) => self.started,
        }
    }

    /// Waits until `until` (a retry backoff), cut short by a cancellation or the deadline.
    /// Returns `false` when the wait became a durable timer: the saga was let go until then, and
    /// this run ends.
    async fn wait(&mut self, until: SystemTime) -> Result<bool, SagaError> {
        self.flush().await?;
        let (wake_at, stoppable) = self.wake_at(until);
        if self.durable_timer(wake_at) {
            let store = &self.engine.inner.store;
            store.release(self.id, self.fence, Some(wake_at)).await?;
            self.engine.set_timer(wake_at);
            return Ok(false);
        }
        let wake = self.instant(wake_at);
        match stoppable {
            false => tokio::time::sleep_until(wake).await,
            true => self.cancel.sleep_until(wake).await,
        }
        self.tick();
        self.cancel.check_lease(self.id)?;
        Ok(true)
    }

    /// When a wait for `until` (a retry backoff) ends, and whether a cancellation can cut it
    /// short: compensations are never cut short (a rollback must finish), nor is anything past
    /// the pivot; otherwise a cancellation or the deadline wakes the wait early, and the
    /// decision sees why.
    fn wake_at(&self, until: SystemTime) -> (SystemTime, bool) {
        let stoppable =
            self.state.rollback.is_none() && !crate::machine::past_pivot(self.table, &self.state);
        let wake_at = match (stoppable, self.state.deadline) {
            (true, Some(deadline)) => deadline.min(until),
            _ => until,
        };
        (wake_at, stoppable)
    }

    /// Whether a wait until `wake_at` becomes a durable timer: it is long enough, and a worker
    /// (this one) will take the saga back when it is due (see
    /// [`EngineBuilder::timer_threshold`](crate::EngineBuilder::timer_threshold)).
    fn durable_timer(&self, wake_at: SystemTime) -> bool {
        let engine = &self.engine;
        engine.inner.shared
            && engine.claims()
            && engine.registers(self.table.name)
            && !self.cancel.was_requested()
            && wake_at
                .duration_since(self.clock)
                .is_ok_and(|wait| wait >= engine.inner.timer_threshold)
    }

    /// Tells the cancellation state once the saga has passed its pivot: from then on it cannot
    /// be cancelled.
    fn note_pivot(&self) {
        if crate::machine::past_pivot(self.table, &self.state) {
            self.cancel.pass_pivot();
        }
    }

    /// A copy of the committed context for the outcome (the store may still share the original).
    fn take_ctx(&self) -> S::Context {
        (*self.committed).clone()
    }
}

/// The step of `table` at a position the executor produced itself (or a store's record of a
/// saga checked against `table`).
pub(crate) fn step_at<S: SagaKind>(table: &Table<S>, index: usize) -> S::Step {
    S::Step::at(index, table.name_of(index))
        .expect("the executor only produces positions of existing steps")
}

/// Why a rollback started, with step names, as events report it.
fn reason<C, D>(table: &StepTable<C, D>, cause: &RollbackCause<usize>) -> RollbackCause<StepName> {
    cause.clone().map(|step| table.name_of(step).into())
}
