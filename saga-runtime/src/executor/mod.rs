//! The executor: drives one saga through its steps, then either to completion, to failure after
//! the pivot, or back through the compensations.

mod attempt;
mod cancel;
mod recovery;
mod rollback;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::level_filters::LevelFilter;

pub(crate) use cancel::CancelState;
pub(crate) use recovery::{park, resume};

use self::attempt::{AttemptPlan, Attempts, AttemptsEnded};
use self::cancel::Stop;
use crate::engine::Engine;
use crate::event::{self, SagaEvent, SagaEventKind};
use crate::outcome::RollbackCause;
use crate::step::{Phase, StepDef};
use crate::store::{CompletedStep, Created, NewSaga, Progress, SagaRecord, StoredContext, Write};
use crate::{Saga, SagaError, SagaId, SagaOutcome, SagaStatus, StepEnum, StepError, Undo};

/// The tracing span of one saga.
pub(crate) fn span<S: Saga>(id: SagaId) -> tracing::Span {
    tracing::info_span!("saga", saga.id = %id, saga.r#type = S::NAME)
}

/// One saga being executed.
pub(crate) struct Run<S: Saga> {
    engine: Engine,
    id: SagaId,
    deps: Arc<S::Deps>,
    /// The last committed context: each attempt starts from a copy of it.
    committed: Arc<S::Context>,
    /// Completed steps in completion order, as the store has them.
    completed: Vec<CompletedStep>,
    past_pivot: bool,
    cancel: Arc<CancelState>,
    deadline: Option<Instant>,
    started: Instant,
    /// Transitions recorded but not yet handed to the store: flushed before user code runs,
    /// before a retry wait, and at the end (see the store module).
    pending: Vec<Write>,
    /// A new saga not in the store yet: the first flush records it.
    unrecorded: Option<Box<Unrecorded>>,
    /// A step interrupted by a crash after its intent was recorded: it runs again before the
    /// deadline or a cancellation is checked (see recovery).
    rerun: Option<usize>,
    /// Held for the run's whole life; dropping it takes the saga out of the running set.
    _claim: Claim,
}

/// How one step (with its retries) ended.
enum StepEnd {
    Completed,
    Failed(StepError),
    Stopped(Stop),
}

/// A saga claimed by this engine: in its running set from before it is recorded (or resumed)
/// until its run ends, so that recovery never resumes a saga this engine is running.
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

/// Records a new saga and runs it to a terminal state. With an id or idempotency key already
/// taken, nothing runs and the error is [`SagaError::AlreadyExists`].
pub(crate) async fn run<S: Saga>(
    claim: Claim,
    ctx: Arc<S::Context>,
    deps: Arc<S::Deps>,
    deadline: Option<Duration>,
    unrecorded: Unrecorded,
) -> Result<SagaOutcome<S::Context, S::Step>, SagaError> {
    let mut run = Run::<S>::new(claim, ctx, deps, deadline);
    run.unrecorded = Some(Box::new(unrecorded));
    run.forward(0).await
}

/// Loads saga `id`, checking that it is an `S` started under this program's definition of `S`.
pub(crate) async fn load<S: Saga>(engine: &Engine, id: SagaId) -> Result<SagaRecord, SagaError> {
    let record = engine
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
    let names: Vec<&str> = S::steps().iter().map(|s| s.name()).collect();
    if record.steps != names {
        return Err(SagaError::IncompatibleDefinition {
            id,
            message: format!(
                "it was started with steps {:?}, this program has {names:?}",
                record.steps
            ),
        });
    }
    Ok(record)
}

/// Resumes the rollback of a compensation-failed saga.
pub(crate) async fn retry_compensation<S: Saga>(
    engine: Engine,
    id: SagaId,
    deps: Arc<S::Deps>,
) -> Result<SagaOutcome<S::Context, S::Step>, SagaError> {
    let record = load::<S>(&engine, id).await?;
    let (SagaStatus::CompensationFailed { .. }, Some(cause)) = (&record.status, record.rollback)
    else {
        return Err(SagaError::InvalidState {
            id,
            operation: "retrying compensation",
            needed: "compensation_failed",
            status: record.status.to_string(),
        });
    };
    let ctx = record
        .context
        .decode::<S::Context>()
        .map_err(|message| SagaError::CorruptContext { id, message })?;
    let claim = Claim::take(&engine, id).ok_or(SagaError::InvalidState {
        id,
        operation: "retrying compensation",
        needed: "not running",
        status: "running on this engine".into(),
    })?;
    let mut run = Run::<S>::new(claim, Arc::new(ctx), deps, None);
    run.completed = record.completed;
    run.resume_rollback(cause).await
}

impl<S: Saga> Run<S> {
    fn new(
        claim: Claim,
        ctx: Arc<S::Context>,
        deps: Arc<S::Deps>,
        deadline: Option<Duration>,
    ) -> Self {
        let started = Instant::now();
        Run {
            engine: claim.engine.clone(),
            id: claim.id,
            deps,
            committed: ctx,
            completed: Vec::new(),
            past_pivot: false,
            cancel: claim.cancel.clone(),
            deadline: deadline.map(|d| started + d),
            started,
            pending: Vec::new(),
            unrecorded: None,
            rerun: None,
            _claim: claim,
        }
    }

    /// Runs the steps in order from `from`; the first that fails for good (or a stop request)
    /// turns the saga back.
    async fn forward(
        &mut self,
        from: usize,
    ) -> Result<SagaOutcome<S::Context, S::Step>, SagaError> {
        let steps = S::steps();
        for (index, def) in steps.iter().enumerate().skip(from) {
            if self.rerun.take() != Some(index) {
                if let Some(stop) = self.cancel.check(self.deadline) {
                    return self.rollback(stop.into()).await;
                }
            }
            let error = match self.run_step(index, def, false).await? {
                StepEnd::Completed => continue,
                StepEnd::Stopped(stop) => return self.rollback(stop.into()).await,
                StepEnd::Failed(error) => error,
            };
            if let Some(fallback) = def.fallback {
                let fallback = fallback();
                self.record(
                    SagaEventKind::FallbackStarted {
                        step: def.name().into(),
                        fallback: fallback.name().into(),
                    },
                    None,
                );
                match self.run_step(index, &fallback, true).await? {
                    StepEnd::Completed => continue,
                    StepEnd::Stopped(stop) => return self.rollback(stop.into()).await,
                    // The outcome keeps the step's own error, not the fallback's.
                    StepEnd::Failed(_) => {}
                }
            }
            if self.past_pivot {
                return self.fail(index, error).await;
            }
            return self
                .rollback(RollbackCause::StepFailed { step: index, error })
                .await;
        }
        let duration = self.started.elapsed();
        self.record(
            SagaEventKind::SagaCompleted { duration },
            Some(SagaStatus::Completed),
        );
        self.flush().await?;
        Ok(SagaOutcome::Completed {
            id: self.id,
            ctx: self.take_ctx(),
        })
    }

    /// Runs the action of step `index` (its own, or its fallback's when `via_fallback`) with its
    /// retries, and commits the context when it succeeds.
    async fn run_step(
        &mut self,
        index: usize,
        def: &StepDef<S::Context, S::Deps>,
        via_fallback: bool,
    ) -> Result<StepEnd, SagaError> {
        let policy = *def.policy();
        let plan = AttemptPlan {
            name: def.name(),
            phase: Phase::Action,
            func: def.action,
            timeout: policy.timeout,
            backoff: policy.backoff,
            attempts: Attempts::retries(policy.retries),
            status: SagaStatus::Running { step: index },
        };
        let (stop, error, attempt) = match self.attempts(&plan).await? {
            AttemptsEnded::Succeeded(ctx, attempt, duration) => {
                self.committed = Arc::new(ctx);
                let done = CompletedStep {
                    step: index,
                    via_fallback,
                    compensated: false,
                    timed_out: false,
                };
                self.completed.push(done);
                let next = index + 1;
                let status =
                    (next < S::steps().len()).then_some(SagaStatus::Running { step: next });
                self.write(
                    SagaEventKind::StepCompleted {
                        step: def.name().into(),
                        attempt,
                        duration,
                    },
                    status,
                    true,
                    Some(Progress::Completed(done)),
                );
                if policy.undo == Undo::Pivot {
                    self.past_pivot = true;
                    self.cancel.pass_pivot();
                }
                return Ok(StepEnd::Completed);
            }
            AttemptsEnded::Failed(error, attempt) => (None, error, attempt),
            AttemptsEnded::Stopped(stop, error, attempt) => (Some(stop), error, attempt),
        };
        // A timed-out action may have had effects; a step that says so is compensated too.
        let progress = (error.is_timeout()
            && policy.compensate_on_timeout
            && def.compensate.is_some()
            && !self.past_pivot)
            .then(|| {
                let done = CompletedStep {
                    step: index,
                    via_fallback,
                    compensated: false,
                    timed_out: true,
                };
                self.completed.push(done);
                Progress::Completed(done)
            });
        self.write(
            SagaEventKind::StepFailed {
                step: def.name().into(),
                attempt,
                error: error.clone(),
            },
            None,
            false,
            progress,
        );
        Ok(match stop {
            Some(stop) => StepEnd::Stopped(stop),
            None => StepEnd::Failed(error),
        })
    }

    /// A step after the pivot failed for good: the saga ends failed, nothing compensated.
    async fn fail(
        &mut self,
        index: usize,
        error: StepError,
    ) -> Result<SagaOutcome<S::Context, S::Step>, SagaError> {
        self.record(
            SagaEventKind::SagaFailed {
                step: S::steps()[index].name().into(),
                error: error.clone(),
                compensation: false,
            },
            Some(SagaStatus::Failed { step: index }),
        );
        self.flush().await?;
        Ok(SagaOutcome::Failed {
            id: self.id,
            step: step_at::<S>(index),
            error,
            ctx: self.take_ctx(),
        })
    }

    /// Records an event without a context change.
    fn record(&mut self, kind: SagaEventKind, status: Option<SagaStatus<usize>>) {
        self.write(kind, status, false, None);
    }

    /// Records a transition: handed to the store (then traced and published) at the next
    /// [`Run::flush`].
    fn write(
        &mut self,
        kind: SagaEventKind,
        status: Option<SagaStatus<usize>>,
        context: bool,
        progress: Option<Progress>,
    ) {
        self.pending.push(Write {
            event: SagaEvent {
                saga_id: self.id,
                saga_type: Cow::Borrowed(S::NAME),
                at: SystemTime::now(),
                kind,
            },
            status,
            context: context.then(|| StoredContext::live(Arc::clone(&self.committed))),
            progress,
        });
    }

    /// Hands the recorded transitions to the store (with the saga itself, the first time), then
    /// to tracing and subscribers: a subscriber only ever sees what the store has.
    async fn flush(&mut self) -> Result<(), SagaError> {
        if self.pending.is_empty() && self.unrecorded.is_none() {
            return Ok(());
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
        #[cfg(all(feature = "failpoints", debug_assertions))]
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
        match self.unrecorded.take() {
            Some(unrecorded) => self.create(unrecorded).await?,
            None => {
                self.engine
                    .inner
                    .store
                    .write(self.id, &mut self.pending)
                    .await?
            }
        }
        #[cfg(all(feature = "failpoints", debug_assertions))]
        for (point, step) in checkpoints {
            crate::failpoint::hit(point, &step);
        }
        for event in announced {
            if traced {
                event::trace(&event.kind);
            }
            if subscribed {
                self.engine.inner.events.publish(event);
            }
        }
        Ok(())
    }

    /// Records the saga with the pending transitions; tells whoever waits which saga holds
    /// the id.
    async fn create(&mut self, mut unrecorded: Box<Unrecorded>) -> Result<(), SagaError> {
        unrecorded.saga.writes = std::mem::take(&mut self.pending);
        let created = self.engine.inner.store.create(unrecorded.saga).await;
        let (told, result) = match created {
            Ok(Created::New) => (Ok(self.id), Ok(())),
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
            crate::failpoint::hit("after_start_commit", "saga");
        }
        result
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

impl From<Stop> for RollbackCause<usize> {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Cancelled => RollbackCause::Cancelled,
            Stop::DeadlineExceeded => RollbackCause::DeadlineExceeded,
        }
    }
}
