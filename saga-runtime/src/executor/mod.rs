//! The executor: drives one saga as a loop around the decision (see [`crate::machine`]): decide,
//! record the intent, perform, record the result, until the saga is terminal.

mod attempt;
mod cancel;
mod finish;
mod recovery;
mod typed;
pub(crate) mod waiting;

pub(crate) use typed::{load, retry};

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::level_filters::LevelFilter;

pub(crate) use cancel::CancelState;
pub(crate) use recovery::{park, resumable, resume};

use crate::engine::Engine;
use crate::event::{SagaEvent, SagaEventKind, StepName};
use crate::machine::{decide, Change, Decision, SagaState, StepFailed, StepTable, Write};
use crate::outcome::RollbackCause;
use crate::store::{Created, Fence, LeaseRequest, NewSaga, StoreErrorKind, StoredContext};
use crate::{Saga, SagaError, SagaId, SagaOutcome, SagaStatus, StepEnum};

/// The tracing span of one saga.
pub(crate) fn span<S: Saga>(id: SagaId) -> tracing::Span {
    tracing::info_span!("saga", saga.id = %id, saga.r#type = S::NAME)
}

type Outcome<S> = SagaOutcome<<S as Saga>::Context, <S as Saga>::Step>;

/// One saga being executed.
pub(crate) struct Run<S: Saga> {
    engine: Engine,
    id: SagaId,
    deps: Arc<S::Deps>,
    table: StepTable<S::Context, S::Deps>,
    /// The last committed context: each attempt starts from a copy of it.
    committed: Arc<S::Context>,
    /// The saga's state as the store has it once the pending writes are flushed.
    state: SagaState,
    /// The lease token this run writes under and the version it last wrote.
    fence: Fence,
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
    /// Held for the run's whole life; dropping it takes the saga out of the running set.
    _claim: Claim,
}

/// A saga claimed by this engine: in its running set from before it is recorded (or resumed)
/// until its run ends, so that this engine never runs a saga twice, and so that lease renewal
/// knows what it holds.
pub(crate) struct Claim {
    engine: Engine,
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
            engine: engine.clone(),
            id,
            cancel,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.engine
            .inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        // The run ended, or let the saga go: whoever waits for it looks again.
        self.engine.inner.waiters.wake(self.id);
    }
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
pub(crate) fn started_event<S: Saga>(id: SagaId, at: SystemTime) -> SagaEvent {
    let steps = S::steps().iter().map(|s| Cow::Borrowed(s.name())).collect();
    SagaEvent {
        saga_id: id,
        saga_type: Cow::Borrowed(S::NAME),
        at,
        kind: SagaEventKind::SagaStarted { steps },
    }
}

/// An event of saga `id` of type `S`.
pub(crate) fn event<S: Saga>(id: SagaId, at: SystemTime, kind: SagaEventKind) -> SagaEvent {
    SagaEvent {
        saga_id: id,
        saga_type: Cow::Borrowed(S::NAME),
        at,
        kind,
    }
}

/// The step table of `S`.
pub(crate) fn table<S: Saga>() -> StepTable<S::Context, S::Deps> {
    StepTable {
        steps: S::steps(),
        options: S::OPTIONS,
    }
}

/// Records a new saga and runs it to a terminal state; if it is let go on a durable timer, waits
/// for its outcome (wherever it then runs). With an id or idempotency key already taken, nothing
/// runs and the error is [`SagaError::AlreadyExists`].
pub(crate) async fn run<S: Saga>(
    claim: Claim,
    ctx: Arc<S::Context>,
    deps: Arc<S::Deps>,
    unrecorded: Unrecorded,
) -> Result<Outcome<S>, SagaError> {
    // One future, not a run's future inside a waiting one: a run's future is a few kilobytes,
    // and every future wrapped around it copies it when it moves.
    let mut run = Run::<S>::recording(claim, ctx, deps, unrecorded);
    if let Some(outcome) = run.drive().await? {
        return Ok(outcome);
    }
    let (engine, id) = (run.engine.clone(), run.id);
    // Not kept while the saga waits.
    drop(run);
    waiting::outcome::<S>(&engine, id).await
}

/// Records a new saga and runs it until it ends or is let go on a durable timer; nobody waits
/// for its outcome.
pub(crate) async fn start<S: Saga>(
    claim: Claim,
    ctx: Arc<S::Context>,
    deps: Arc<S::Deps>,
    unrecorded: Unrecorded,
) -> Result<(), SagaError> {
    let mut run = Run::<S>::recording(claim, ctx, deps, unrecorded);
    run.drive().await.map(drop)
}

impl<S: Saga> Run<S> {
    /// The run of a new saga, which its first flush records.
    fn recording(
        claim: Claim,
        ctx: Arc<S::Context>,
        deps: Arc<S::Deps>,
        unrecorded: Unrecorded,
    ) -> Self {
        let state = unrecorded.saga.initial_state();
        let mut run = Run::new(claim, ctx, deps, state, Fence::default());
        run.unrecorded = Some(Box::new(unrecorded));
        run
    }

    fn new(
        claim: Claim,
        ctx: Arc<S::Context>,
        deps: Arc<S::Deps>,
        state: SagaState,
        fence: Fence,
    ) -> Self {
        if fence.token != 0 && claim.engine.inner.shared {
            // Resumed or reopened: the store committed the lease before this run was made (only
            // leases on a shared store are renewed, and can be lost).
            claim.cancel.leased();
        }
        let wall = SystemTime::now();
        Run {
            engine: claim.engine.clone(),
            id: claim.id,
            deps,
            table: table::<S>(),
            committed: ctx,
            state,
            fence,
            cancel: claim.cancel.clone(),
            started: Instant::now(),
            started_wall: wall,
            clock: wall,
            pending: Vec::new(),
            unrecorded: None,
            _claim: claim,
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
            match decide(&self.table, &self.state, self.clock, cancelled) {
                Decision::Run(task) => self.attempt(task).await?,
                Decision::Wait(until) => {
                    if !self.wait(until).await? {
                        return Ok(None);
                    }
                }
                Decision::Stop {
                    step,
                    attempt,
                    error,
                    cause,
                } => {
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
                    let reason = reason::<S>(&cause);
                    self.record(
                        SagaEventKind::CompensationStarted { reason },
                        Change::RollbackStarted(Box::new(cause)),
                        None,
                    );
                    self.set_status(finish::pending_status(&self.table, &self.state));
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
                Decision::Fail { step, error } => return self.fail(step, error).await.map(Some),
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
        // Compensations are never cut short (a rollback must finish), nor is anything past the
        // pivot; otherwise a cancellation or the deadline wakes the wait early, and the decision
        // sees why.
        let stoppable =
            self.state.rollback.is_none() && !crate::machine::past_pivot(&self.table, &self.state);
        let wake_at = match (stoppable, self.state.deadline) {
            (true, Some(deadline)) => deadline.min(until),
            _ => until,
        };
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

    /// Whether a wait until `wake_at` becomes a durable timer: it is long enough, and a worker
    /// (this one) will take the saga back when it is due (see
    /// [`EngineBuilder::timer_threshold`](crate::EngineBuilder::timer_threshold)).
    fn durable_timer(&self, wake_at: SystemTime) -> bool {
        let engine = &self.engine;
        engine.inner.shared
            && engine.claims()
            && engine.registers(S::NAME)
            && !self.cancel.was_requested()
            && wake_at
                .duration_since(self.clock)
                .is_ok_and(|wait| wait >= engine.inner.timer_threshold)
    }

    /// Tells the cancellation state once the saga has passed its pivot: from then on it cannot
    /// be cancelled.
    fn note_pivot(&self) {
        if crate::machine::past_pivot(&self.table, &self.state) {
            self.cancel.pass_pivot();
        }
    }

    /// Records a transition: applied to this run's state at once, handed to the store (then
    /// traced and published) at the next [`Run::flush`].
    fn record(&mut self, kind: SagaEventKind, change: Change, status: Option<SagaStatus<usize>>) {
        // Built in place (a write is a few hundred bytes, and every transition makes one), at
        // the time of the last look at the clock.
        let write = Write {
            event: event::<S>(self.id, self.clock, kind),
            change,
            status,
            context: None,
        };
        self.push(write);
    }

    /// Records a write: applied to this run's state at once, handed to the store at the next
    /// flush.
    fn push(&mut self, write: Write) {
        self.state.apply(&write);
        self.pending.push(write);
    }

    /// Sets the status of the last recorded write (computed from the state it left).
    fn set_status(&mut self, status: Option<SagaStatus<usize>>) {
        if let (Some(status), Some(last)) = (status, self.pending.last_mut()) {
            self.state.status = status.clone();
            last.status = Some(status);
        }
    }

    /// The committed context, for a write.
    fn context(&self) -> StoredContext {
        StoredContext::live(Arc::clone(&self.committed))
    }

    /// Hands the recorded transitions to the store (with the saga itself, the first time), then
    /// to tracing and subscribers: a subscriber only ever sees what the store has. Returns
    /// whether the store made it wait (a store that answers at once takes no time worth looking
    /// at the clock again for).
    async fn flush(&mut self) -> Result<bool, SagaError> {
        if self.pending.is_empty() && self.unrecorded.is_none() {
            return Ok(false);
        }
        let subscribed = self.engine.inner.events.has_subscribers();
        // Events are traced and published once the store has them; copies are kept for that
        // only when someone listens.
        let traced = LevelFilter::current() != LevelFilter::OFF;
        let announced: Vec<SagaEvent> = match subscribed || traced {
            true => self
                .unrecorded
                .as_ref()
                .map(|u| u.saga.started.clone())
                .into_iter()
                .chain(self.pending.iter().map(|w| w.event.clone()))
                .collect(),
            false => Vec::new(),
        };
        #[cfg(any(feature = "testing", all(feature = "failpoints", debug_assertions)))]
        let checkpoints: Vec<(&'static str, String)> = self
            .pending
            .iter()
            .filter_map(|w| match &w.event.kind {
                SagaEventKind::StepCompleted { step, .. } => {
                    Some(("after_checkpoint", step.to_string()))
                }
                SagaEventKind::StepCompensated { step, .. } => {
                    Some(("after_compensation_checkpoint", step.to_string()))
                }
                _ => None,
            })
            .collect();
        let waited = match self.unrecorded.take() {
            Some(unrecorded) => self.create(unrecorded).await?,
            None => {
                let store = &self.engine.inner.store;
                let answer = store.write(self.id, self.fence, &mut self.pending);
                let waited = !answer.is_ready();
                let written = answer.await;
                match written {
                    Ok(version) => self.fence.version = version,
                    Err(error) => {
                        // Refused as stale: another worker holds the saga now, or finished it
                        // (a terminal saga refuses every write before looking at the token).
                        if matches!(
                            error.kind(),
                            StoreErrorKind::Fenced | StoreErrorKind::Conflict
                        ) {
                            self.engine.inner.count_fenced();
                            S::metrics().fenced();
                        }
                        return Err(error.into());
                    }
                }
                waited
            }
        };
        #[cfg(any(feature = "testing", all(feature = "failpoints", debug_assertions)))]
        for (point, step) in checkpoints {
            self.boundary(point, &step)?;
        }
        self.announce_traced(announced, traced, subscribed);
        Ok(waited)
    }

    /// Traces and publishes events the store already has.
    fn announce(&self, events: Vec<SagaEvent>) {
        let subscribed = self.engine.inner.events.has_subscribers();
        let traced = LevelFilter::current() != LevelFilter::OFF;
        self.announce_traced(events, traced, subscribed);
    }

    fn announce_traced(&self, events: Vec<SagaEvent>, traced: bool, subscribed: bool) {
        for event in events {
            if traced {
                crate::event::trace(&event.kind);
            }
            if subscribed {
                self.engine.inner.events.publish(event);
            }
        }
    }

    /// Records the saga with the pending transitions; tells whoever waits which saga holds
    /// the id. Returns whether the store made it wait.
    async fn create(&mut self, unrecorded: Box<Unrecorded>) -> Result<bool, SagaError> {
        let (created, waited) = match self.engine.record_type::<S>().await {
            Ok(()) => {
                let store = &self.engine.inner.store;
                let answer = store.create(unrecorded.saga, &mut self.pending);
                let waited = !answer.is_ready();
                (answer.await, waited)
            }
            Err(error) => (Err(error), true),
        };
        let (told, result) = match created {
            Ok(Created::New { version, lease }) => {
                S::metrics().started();
                if self.engine.inner.shared {
                    self.cancel.leased();
                }
                self.fence = Fence {
                    token: lease.map_or(0, |l| l.token),
                    version,
                };
                (Ok(self.id), Ok(waited))
            }
            Ok(Created::Existing(record)) => (
                Ok(record.id),
                Err(SagaError::AlreadyExists { id: record.id }),
            ),
            Err(error) => (
                Err(SagaError::Store(error.clone())),
                Err(SagaError::Store(error)),
            ),
        };
        if let Some(recorded) = unrecorded.recorded {
            // A caller that went away no longer needs the answer.
            let _ = recorded.send(told);
        }
        if result.is_ok() {
            self.boundary("after_start_commit", "saga")?;
        }
        result
    }

    /// A durability boundary: where the crash tests' failpoints abort the process, and where the
    /// test kit's crash explorer stops this engine (its store refuses everything from then on).
    #[inline]
    fn boundary(&self, point: &'static str, step: &str) -> Result<(), SagaError> {
        crate::failpoint::hit(point, step);
        #[cfg(feature = "testing")]
        if let Some(kit) = &self.engine.inner.kit {
            if kit.boundary(point, step) {
                return Err(SagaError::Store(crate::store::StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("the process crashed at {point}@{step} (test kit)"),
                )));
            }
        }
        Ok(())
    }

    /// A copy of the committed context for the outcome (the store may still share the original).
    fn take_ctx(&self) -> S::Context {
        (*self.committed).clone()
    }
}

/// The generated step enum's variant at a position the executor produced itself.
fn step_at<S: Saga>(index: usize) -> S::Step {
    S::Step::from_index(index).expect("the executor only produces positions of existing steps")
}

/// Why a rollback started, with step names, as events report it.
fn reason<S: Saga>(cause: &RollbackCause<usize>) -> RollbackCause<StepName> {
    cause.clone().map(|step| S::steps()[step].name().into())
}

impl Engine {
    /// Records saga type `S`'s shape in a shared store, the first time this engine starts (or
    /// enqueues) one of its sagas: tools draw the type from there (`saga graph`).
    pub(crate) async fn record_type<S: Saga>(&self) -> Result<(), crate::store::StoreError> {
        let recorded = || {
            self.inner
                .types_recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if !self.inner.shared || recorded().contains(S::NAME) {
            return Ok(());
        }
        let shape = crate::SagaShape::from(&S::description());
        self.inner.store.record_type(shape).await?;
        recorded().insert(S::NAME);
        Ok(())
    }

    /// The lease this engine takes on a saga it starts or acquires.
    pub(crate) fn lease_request(&self) -> LeaseRequest {
        LeaseRequest::new(self.inner.worker.id.clone(), self.inner.lease_for_store())
    }
}
