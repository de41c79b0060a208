//! One attempt: the intent recorded first, a per-attempt timeout, panics caught, the
//! committed-context rule (an attempt works on a copy; only a successful attempt's copy is
//! committed), then the result recorded.
//!
//! # Order
//!
//! Each attempt: record the intent ("step started") and make it durable, clone the committed
//! context, run the function under the timeout with panics caught (and stopped at once if the
//! worker loses its lease), then record the result: completed (with the new context), a retry
//! scheduled, or failed for good. The timeout wraps one attempt, never the whole retry loop; the
//! backoff wait is the decision's (a wake time in the state), between attempts.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use super::exchange::{compensation_once, may_be_remote, remote_once, replied};
use super::Run;
use crate::engine::{Engine, Exchanged};
use crate::event::SagaEventKind;
use crate::machine::{
    past_pivot, retries_after, Change, CompensationFailed, CompletedStep, Definition,
    RetryScheduled, StepFailed, Task,
};
use crate::step::{Phase, StepDef, StepFn};
use crate::{SagaError, SagaKind, SagaStatus, StepCx, StepError};
use futures_util::future::{Either, OptionFuture};

/// What stands in for an attempt: nothing (zero-sized) without the test kit, so that every
/// attempt's future stays as small as it was.
#[cfg(not(feature = "testing"))]
type Injection = ();
#[cfg(feature = "testing")]
type Injection = Option<Injected>;

/// What the test kit makes an attempt do instead of running the step.
#[cfg(feature = "testing")]
pub(crate) enum Injected {
    /// Return this error.
    Fail(StepError),
    /// Panic with this message (caught as a step's panic is).
    Panic(String),
}

#[cfg(feature = "testing")]
impl Injected {
    fn of(fault: crate::testing::Fault, timeout: Option<Duration>) -> Self {
        use crate::testing::Fault;
        match fault {
            Fault::Transient(message) => Injected::Fail(StepError::transient(message)),
            Fault::Permanent(message) => Injected::Fail(StepError::permanent(message)),
            Fault::Timeout => Injected::Fail(StepError::timeout(timeout.unwrap_or_default())),
            Fault::Panic(message) => Injected::Panic(message),
        }
    }
}

/// What the test kit logs of an attempt besides its result: the idempotency key it was handed
/// (a formatted string, built only when a kit listens) and whether a fault stood in for it.
#[cfg(feature = "testing")]
type KitLog = Option<(String, bool)>;
#[cfg(not(feature = "testing"))]
type KitLog = ();

/// Runs one attempt: the timeout applies to it alone, and a panic becomes a permanent error.
///
/// Plain functions returning their futures, not `async fn`s, here and below: each `async fn`
/// layer keeps its parameters beside the future it awaits, and the three layers this was cost
/// every attempt in flight 160 bytes.
fn attempt_once<'a, C, D>(
    func: StepFn<C, D>,
    work: &'a mut C,
    cx: &'a StepCx<D>,
    timeout: Option<Duration>,
    injected: Injection,
) -> impl std::future::Future<Output = Result<Option<crate::OutputValue>, StepError>> + 'a {
    // The step's own future as it is without the test kit: no second future around it.
    #[cfg(not(feature = "testing"))]
    let call = {
        let () = injected;
        func(work, cx)
    };
    #[cfg(feature = "testing")]
    let call = match injected {
        None => futures_util::future::Either::Left(func(work, cx)),
        Some(injected) => futures_util::future::Either::Right(async move {
            match injected {
                Injected::Fail(error) => Err(error),
                Injected::Panic(message) => panic!("{message}"),
            }
        }),
    };
    guarded_within(call, timeout.map(|limit| (limit, limit)), "step")
}

/// Runs an attempt's future (a step's, a choreography handler's) under its timeout, a panic
/// becoming a permanent error that names `what` panicked: `within` is (time left, timeout), the
/// second being what a timeout error reports.
pub(crate) fn guarded_within<F, T>(
    call: F,
    within: Option<(Duration, Duration)>,
    what: &'static str,
) -> impl std::future::Future<Output = Result<T, StepError>>
where
    F: std::future::Future<Output = Result<T, StepError>>,
{
    let guarded = AssertUnwindSafe(call).catch_unwind();
    let caught = |result: std::thread::Result<Result<T, StepError>>| {
        result.unwrap_or_else(|payload| Err(StepError::panic(what, &*payload)))
    };
    match within {
        Some((left, limit)) => Either::Left(tokio::time::timeout(left, guarded).map(
            move |result| match result {
                Ok(result) => caught(result),
                Err(_) => Err(StepError::timeout(limit)),
            },
        )),
        None => Either::Right(guarded.map(caught)),
    }
}

/// An attempt whose intent is recorded, for a member of a parallel group: what it runs, on
/// what, with which handle.
pub(super) struct Prepared<C, D> {
    task: Task,
    func: StepFn<C, D>,
    /// For an attempt that may be carried out by a service: the engine that sends it.
    remote: Option<Engine>,
    timeout: Option<Duration>,
    /// A copy of the committed context, which the attempt works on.
    work: C,
    cx: StepCx<D>,
    injected: Injection,
    log: KitLog,
}

/// A member's attempt that ended, with its result and the copy of the context it worked on.
pub(super) struct Ended<C> {
    pub(super) task: Task,
    work: C,
    result: Result<Option<crate::OutputValue>, StepError>,
    log: KitLog,
}

impl<C: Send + 'static, D: Send + Sync + 'static> Prepared<C, D> {
    /// Performs the attempt, owning what it needs: the future of a member of a parallel group,
    /// run at once with its siblings'.
    pub(super) async fn perform(self) -> Ended<C> {
        let Prepared {
            task,
            func,
            remote,
            timeout,
            mut work,
            cx,
            injected,
            log,
        } = self;
        let result = match remote {
            None => attempt_once(func, &mut work, &cx, timeout, injected).await,
            Some(engine) => {
                let build = attempt_once(func, &mut work, &cx, None, injected);
                let within = timeout.map(|limit| (limit, limit));
                replied(remote_once(&engine, &cx, build, within, None).await)
            }
        };
        Ended {
            task,
            work,
            result,
            log,
        }
    }
}

impl<S: SagaKind> Run<S> {
    /// Runs one attempt of `task` and records its result. Returns `false` when the attempt let
    /// the saga go to wait for its participant's reply without a task (the run ends; the reply,
    /// or the attempt's timeout, wakes the saga).
    pub(super) async fn attempt(&mut self, task: Task) -> Result<bool, SagaError> {
        let name = self.table.def(task.step, task.fallback).name();
        self.intend(task, name)?;
        let waited = self.flush().await?;
        self.intended(task, name)?;
        // Built here rather than through `prepare` (a struct of them would be moved twice more
        // on every attempt of every saga), in a block: the step's definition (200 bytes) is not
        // kept in the run's future while the attempt runs.
        let (func, cx, injected, log, timeout, remote) = {
            let def = self.table.def(task.step, task.fallback);
            let func = self
                .table
                .func(task.step, task.fallback, task.phase == Phase::Compensation);
            let cx = self.handle(task, &def);
            let (injected, log) = self.injection(task, &def, &cx);
            let remote = def.description.remote.is_some();
            (func, cx, injected, log, def.policy().timeout, remote)
        };
        let mut work = (*self.committed).clone();
        // The attempt starts once its intent is recorded: a store that made the run wait (a
        // durable store's commit) took time that is not the step's.
        let started = match waited {
            true => self.tick(),
            false => self.clock,
        };
        let attempt = match (task.phase, remote) {
            (Phase::Action, false) => Either::Left(Either::Left(futures_util::FutureExt::map(
                attempt_once(func, &mut work, &cx, timeout, injected),
                |result| result.map(Exchanged::Reply),
            ))),
            // A compensation (local or remote) has its whole timeout on every run; it becomes an
            // exchange only when it returns a command. Boxed: it holds an attempt and what an
            // exchange needs, and compensations are rarer than actions.
            (Phase::Compensation, _) => {
                let patience = self.patience(timeout);
                Either::Left(Either::Right(Box::pin(compensation_once(
                    &self.engine,
                    &cx,
                    attempt_once(func, &mut work, &cx, timeout, injected),
                    timeout,
                    patience,
                ))))
            }
            // An exchange with a service is boxed: most actions are local. A remote action
            // resumed keeps to the timeout its exchange started with.
            (Phase::Action, true) => {
                let since = self.state.in_flight_since(task.step, task.phase);
                let (since, now) = (since.unwrap_or(started), self.now());
                let within = timeout.map(|limit| {
                    let left = (since + limit).duration_since(now).unwrap_or_default();
                    (left, limit)
                });
                let patience = self.patience(within.map(|(left, _)| left));
                Either::Right(Box::pin(remote_once(
                    &self.engine,
                    &cx,
                    attempt_once(func, &mut work, &cx, None, injected),
                    within,
                    patience,
                )))
            }
        };
        // Only a store shared with other processes can lose the saga to another worker while
        // the attempt runs; boxed, so that it takes no room in every attempt's future (where a
        // commit costs far more than the allocation).
        let shared = self.engine.inner.shared;
        let lost = OptionFuture::from(shared.then(|| Box::pin(self.cancel.lost())));
        // One await whatever the store: a future awaited in two places is kept apart from the
        // others of this function, in every state of it.
        let result = tokio::select! {
            biased;
            result = attempt => result,
            // Another worker holds the saga now: this attempt's result could not be recorded.
            // (Without a shared store, `lost` is `None` at once, and the branch is disabled.)
            Some(()) = lost => return self.cancel.check_lease(self.id).map(|()| true),
        };
        let result = match result {
            Ok(Exchanged::Reply(output)) => Ok(output),
            Ok(Exchanged::Pending) => {
                let since = self
                    .state
                    .in_flight_since(task.step, task.phase)
                    .unwrap_or(started);
                // Boxed: only a remote step lets its saga go to wait for a reply.
                Box::pin(self.let_go_for_reply(since, timeout)).await?;
                return Ok(false);
            }
            Err(error) => Err(error),
        };
        self.conclude(task, work, result, started, log)?;
        Ok(true)
    }

    /// Records the result of a member's attempt that started at `started`.
    pub(super) fn conclude_member(
        &mut self,
        ended: Ended<S::Context>,
        started: std::time::SystemTime,
    ) -> Result<(), SagaError> {
        let Ended {
            task,
            work,
            result,
            log,
        } = ended;
        self.conclude(task, work, result, started, log)
    }

    /// Records the intent of an attempt of `task` (not yet handed to the store).
    pub(super) fn intend(&mut self, task: Task, name: &'static str) -> Result<(), SagaError> {
        let phase = task.phase;
        self.record(
            SagaEventKind::StepStarted {
                step: name.into(),
                phase,
                attempt: task.attempt,
            },
            Change::AttemptStarted {
                step: task.step,
                phase,
                attempt: task.attempt,
            },
            None,
        );
        // The step at work; in a parallel group, the group's first member, for as long as
        // the group is at work (so that statuses only move forward).
        let step = self.table.stage(task.step).start;
        let status = match phase {
            Phase::Action => SagaStatus::Running { step },
            Phase::Compensation => SagaStatus::Compensating { step },
        };
        if self.state.status != status {
            self.set_status(Some(status));
        }
        // The intent is durable before the step runs (write-ahead).
        self.boundary(
            phase.point("before_intent", "before_compensation_intent"),
            name,
        )
    }

    /// The intent of an attempt of `task` is durable.
    pub(super) fn intended(&self, task: Task, name: &'static str) -> Result<(), SagaError> {
        self.boundary(
            task.phase
                .point("after_intent", "after_compensation_intent"),
            name,
        )
    }

    /// What a member's attempt of `task`, its intent recorded, runs with.
    pub(super) fn prepare(&self, task: Task) -> Prepared<S::Context, S::Deps> {
        let def = self.table.def(task.step, task.fallback);
        let cx = self.handle(task, &def);
        let (injected, log) = self.injection(task, &def, &cx);
        Prepared {
            task,
            func: self
                .table
                .func(task.step, task.fallback, task.phase == Phase::Compensation),
            remote: may_be_remote(task, &def).then(|| self.engine.clone()),
            timeout: def.policy().timeout,
            work: (*self.committed).clone(),
            cx,
            injected,
            log,
        }
    }

    /// The step handle of an attempt of `task`.
    fn handle(&self, task: Task, def: &StepDef<S::Context, S::Deps>) -> StepCx<S::Deps> {
        let cx = StepCx::new(
            self.id,
            self.table.name,
            def.name(),
            task.attempt,
            task.phase,
            self.fence.token,
            Arc::clone(&self.deps),
        )
        .with_instance(def.instance);
        // A compensation receives the output its step recorded; an action, the outputs of the
        // earlier steps it takes.
        match task.phase {
            Phase::Compensation => cx.with_recorded(self.state.output(task.step)),
            Phase::Action if def.description.inputs.is_empty() => cx,
            Phase::Action => cx.with_inputs(self.inputs(def.description.inputs)),
        }
    }

    /// What the test kit makes an attempt of `task` do instead of running it, if anything, and
    /// what it logs of the attempt.
    #[allow(unused_variables)]
    fn injection(
        &self,
        task: Task,
        def: &StepDef<S::Context, S::Deps>,
        cx: &StepCx<S::Deps>,
    ) -> (Injection, KitLog) {
        #[cfg(feature = "testing")]
        if let Some(kit) = &self.engine.inner.kit {
            let injected = kit
                .fault(def.name(), task.phase, task.attempt)
                .map(|fault| Injected::of(fault, def.policy().timeout));
            let logged = injected.is_some();
            return (injected, Some((cx.idempotency_key(), logged)));
        }
        #[cfg(feature = "testing")]
        return (None, None);
        #[cfg(not(feature = "testing"))]
        ((), ())
    }

    /// Records the result of an attempt of `task` that started at `started`, which worked on
    /// `work`.
    fn conclude(
        &mut self,
        task: Task,
        work: S::Context,
        result: Result<Option<crate::OutputValue>, StepError>,
        started: std::time::SystemTime,
        log: KitLog,
    ) -> Result<(), SagaError> {
        let def = self.table.def(task.step, task.fallback);
        let (name, policy) = (def.name(), *def.policy());
        let phase = task.phase;
        // The result is recorded at the time the attempt ended.
        let ended = self.tick();
        #[cfg(feature = "testing")]
        if let (Some(kit), Some((key, injected))) = (&self.engine.inner.kit, log) {
            kit.called(crate::testing::Call {
                saga: self.id,
                step: name.to_owned(),
                phase,
                attempt: task.attempt,
                key,
                result: result.clone().map(|_| ()),
                injected,
            });
        }
        #[cfg(not(feature = "testing"))]
        let () = log;
        // A durable store records the output's JSON: written now, so that one serde cannot
        // write fails the step rather than the store's write.
        let result = match result {
            Ok(Some(output)) if self.engine.inner.encodes => match output.check() {
                Ok(()) => Ok(Some(output)),
                Err(e) => Err(StepError::permanent(format!(
                    "its output cannot be recorded: {e}"
                ))),
            },
            result => result,
        };
        let error = match result {
            Ok(output) => {
                self.boundary(
                    phase.point("after_effect", "after_compensation_effect"),
                    name,
                )?;
                // A member of a parallel group reads the context only: its copy is not committed
                // (nor written again), so that no member's copy overwrites another's.
                let member = self.concurrent(task);
                if !member {
                    self.committed = Arc::new(work);
                }
                self.succeeded(
                    task,
                    name,
                    ended.duration_since(started).unwrap_or_default(),
                    output,
                    !member,
                );
                return Ok(());
            }
            Err(error) => error,
        };
        if retries_after(self.table, &task, &error) {
            let delay = self
                .engine
                .inner
                .backoff
                .delay(policy.backoff, task.attempt);
            self.table.metrics().retry(task.step);
            self.record(
                SagaEventKind::RetryScheduled {
                    step: name.into(),
                    phase,
                    attempt: task.attempt,
                    delay,
                    error: error.clone(),
                },
                Change::RetryScheduled(Box::new(RetryScheduled::new(
                    task.step, phase, delay, error,
                ))),
                None,
            );
            return Ok(());
        }
        let (kind, change) = match phase {
            Phase::Action => {
                // A timed-out action may have had effects; a step that says so is compensated too.
                let compensate = (error.is_timeout()
                    && policy.compensate_on_timeout
                    && def.compensate.is_some()
                    && !past_pivot(self.table, &self.state))
                .then(|| CompletedStep::timed_out(task.step, task.fallback));
                let kind = SagaEventKind::StepFailed {
                    step: name.into(),
                    attempt: task.attempt,
                    error: error.clone(),
                };
                let mut failed = StepFailed::new(task.step, error);
                failed.compensate = compensate;
                let change = Change::StepFailed(Box::new(failed));
                (kind, change)
            }
            Phase::Compensation => {
                let kind = SagaEventKind::CompensationFailed {
                    step: name.into(),
                    attempt: task.attempt,
                    error: error.clone(),
                };
                let change =
                    Change::CompensationFailed(Box::new(CompensationFailed::new(task.step, error)));
                (kind, change)
            }
        };
        self.record(kind, change, None);
        Ok(())
    }

    /// The recorded outputs of the steps named `names`.
    fn inputs(&self, names: &[&'static str]) -> Box<[crate::step::NamedOutput]> {
        // Sized once: each is usually there (one that is not is read as missing).
        let mut inputs = Vec::with_capacity(names.len());
        for &name in names {
            let step = self.table.position(name);
            if let Some(output) = step.and_then(|step| self.state.output(step)) {
                inputs.push((name, output.clone()));
            }
        }
        inputs.into_boxed_slice()
    }

    /// Records a successful attempt: its output, for an action, and its context when `commit`
    /// (not for a member of a parallel group, which reads the context only).
    fn succeeded(
        &mut self,
        task: Task,
        name: &'static str,
        duration: Duration,
        output: Option<crate::OutputValue>,
        commit: bool,
    ) {
        self.table
            .metrics()
            .attempt(task.step, task.phase == Phase::Compensation, duration);
        let context = commit.then(|| self.context());
        match task.phase {
            Phase::Action => {
                // The next step, once no member of the step's group is still at work or failed.
                let next = self.table.stage(task.step).end;
                let group_busy = self.table.grouped()
                    && (self
                        .state
                        .failure
                        .as_ref()
                        .is_some_and(|f| f.step != task.step)
                        || self
                            .state
                            .active
                            .iter()
                            .any(|a| a.phase == Phase::Action && a.step != task.step));
                let status = (!group_busy && next < self.table.steps.len())
                    .then_some(SagaStatus::Running { step: next });
                let kind = SagaEventKind::StepCompleted {
                    step: name.into(),
                    attempt: task.attempt,
                    duration,
                    output: output.clone(),
                };
                let done = CompletedStep::new(task.step, task.fallback);
                let change = match output {
                    Some(output) => Change::CompletedWithOutput(Box::new((done, output))),
                    None => Change::Completed(done),
                };
                self.record(kind, change, status);
                self.note_pivot();
            }
            Phase::Compensation => {
                let kind = SagaEventKind::StepCompensated {
                    step: name.into(),
                    attempt: task.attempt,
                };
                self.record(kind, Change::Compensated { step: task.step }, None);
                let status = super::finish::pending_status(self.table, &self.state);
                self.set_status(status);
            }
        }
        if let (Some(last), Some(context)) = (self.pending.last_mut(), context) {
            last.context = Some(context);
        }
    }
}
