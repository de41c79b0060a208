//! A saga's state, and the fold of a write into it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::event::SagaEvent;
use crate::outcome::RollbackCause;
use crate::output::RecordedOutput;
use crate::step::Phase;
use crate::store::StoredContext;
use crate::{SagaStatus, StepError};

/// Where one saga is: everything its next move depends on, but its definition, its context and
/// the time. A store keeps it (serialized, in a durable store) and changes it only through
/// [`SagaState::apply`].
///
/// ```
/// use saga_runtime::store::{Change, SagaState};
///
/// let state = SagaState::new(None);
/// assert_eq!(state.status.name(), "pending");
/// assert!(state.completed.is_empty() && state.active.is_empty());
/// # let _ = Change::None;
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaState {
    /// The status, as `status(id)` reports it (with step positions).
    pub status: SagaStatus<usize>,
    /// Steps that completed (or that timed out and are to be compensated anyway), in completion
    /// order: rollback undoes them latest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed: Vec<CompletedStep>,
    /// Why it rolls back, once it does. Boxed, as `failure`: most sagas never roll back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Box<RollbackCause<usize>>>,
    /// The steps being worked on: an attempt in flight (its intent recorded, its result not), or
    /// waiting for its next attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<Activity>,
    /// A step that failed for good and has not been dealt with yet (by its fallback, the pivot
    /// rule or a rollback), or whose error a rollback reports. Boxed: most sagas never have
    /// one, and every saga in flight keeps a state in its run and another in an in-memory store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Box<Failure>>,
    /// Compensations that failed for good, in the order they failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compensation_failures: Vec<CompensationFailed>,
    /// When the whole saga must be done by (wall-clock time, so that it holds across restarts).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "millis")]
    pub deadline: Option<SystemTime>,
    /// How many times in a row a worker took the saga over without it making progress since.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recovery_attempts: u32,
    /// A cancellation came too late to stop the saga, and that was recorded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cancel_ignored: bool,
    /// The deadline passed too late to stop the saga, and that was recorded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deadline_ignored: bool,
    /// The position of the saga's pivot step (or of the step whose fallback is a pivot), as its
    /// definition had it when the saga was recorded: what an operator's cancellation is checked
    /// against without the definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pivot: Option<usize>,
    /// The status a parked saga had before it was parked: the one it gets back when an operator
    /// resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_from: Option<Box<SagaStatus<usize>>>,
    /// The outputs of completed steps that returned one (not `()`), in completion order: what
    /// their compensations receive and the outcome holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<RecordedOutput>,
    /// The parallel groups of the definition it was recorded under, as ranges of step
    /// positions: a definition that groups its steps otherwise cannot resume it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<std::ops::Range<usize>>,
}

// A state is encoded at every transition of a durable saga: what is false or zero (most of it)
// is left out, and read back as such.
fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A step that completed, as the state keeps it for rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompletedStep {
    /// The step's position.
    pub step: usize,
    /// `true` when the step's fallback completed in its place (its compensation is then the
    /// fallback's).
    #[serde(default, skip_serializing_if = "is_false")]
    pub via_fallback: bool,
    /// `true` once its compensation succeeded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub compensated: bool,
    /// `true` when the step did not complete but timed out for good and asked to be compensated
    /// anyway (`compensate_on_timeout`); such an entry is not progress.
    #[serde(default, skip_serializing_if = "is_false")]
    pub timed_out: bool,
}

impl CompletedStep {
    /// Step `step` completed (through its fallback when `via_fallback`).
    pub fn new(step: usize, via_fallback: bool) -> Self {
        CompletedStep {
            step,
            via_fallback,
            compensated: false,
            timed_out: false,
        }
    }

    /// Step `step` timed out for good and is to be compensated anyway.
    pub fn timed_out(step: usize, via_fallback: bool) -> Self {
        CompletedStep {
            timed_out: true,
            ..CompletedStep::new(step, via_fallback)
        }
    }
}

/// One step being worked on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Activity {
    /// The step's position.
    pub step: usize,
    /// Its action (or fallback) or its compensation.
    pub phase: Phase,
    /// `true` when the action is the step's fallback (and, in rollback, when the compensation is
    /// the fallback's).
    #[serde(default, skip_serializing_if = "is_false")]
    pub fallback: bool,
    /// The last attempt started, from 1; 0 before the first.
    pub attempt: u32,
    /// `true` while that attempt's intent is recorded and its result is not.
    #[serde(default, skip_serializing_if = "is_false")]
    pub in_flight: bool,
    /// When that attempt started (its first intent: an attempt resumed after a crash keeps
    /// it), so that a resumed wait for a participant's reply keeps to the attempt's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "millis")]
    pub started: Option<SystemTime>,
    /// When the next attempt is due, after a retryable failure.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "millis")]
    pub retry_at: Option<SystemTime>,
    /// The last attempt's error (boxed: most activities have none, and every saga in flight
    /// keeps one activity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Box<StepError>>,
}

impl Activity {
    pub(crate) fn new(step: usize, phase: Phase, fallback: bool) -> Self {
        Activity {
            step,
            phase,
            fallback,
            attempt: 0,
            in_flight: false,
            started: None,
            retry_at: None,
            last_error: None,
        }
    }
}

/// A step's action that failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Failure {
    /// The step's position.
    pub step: usize,
    /// The step's own error: a fallback that fails too does not replace it.
    pub error: StepError,
    /// `true` once the step's fallback was started.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fallback_tried: bool,
    /// Set when the step was stopped in a retry wait by a cancellation or the deadline: the
    /// rollback's cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<RollbackCause<usize>>,
}

/// A compensation that failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompensationFailed {
    /// The step whose compensation failed.
    pub step: usize,
    /// The compensation's last error.
    pub error: StepError,
}

/// What a write changes in a saga's state, besides its status and context (step positions, not
/// names).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// Nothing but the status (if the write has one).
    None,
    /// An attempt's intent: it is about to run.
    AttemptStarted {
        /// The step.
        step: usize,
        /// Action (or fallback) or compensation.
        phase: Phase,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// An attempt failed with a retryable error; the next is due after its delay (counted from
    /// the write's event time). Boxed, as the other rare variants, so that the common writes stay
    /// small.
    RetryScheduled(Box<RetryScheduled>),
    /// A step's action (or its fallback) completed, or timed out for good and is to be
    /// compensated anyway (`timed_out`).
    Completed(CompletedStep),
    /// A step's action (or its fallback) completed and returned this output.
    CompletedWithOutput(Box<(CompletedStep, crate::OutputValue)>),
    /// A step's action (or its fallback) failed for good.
    StepFailed(Box<StepFailed>),
    /// The failed step's fallback starts.
    FallbackStarted {
        /// The step.
        step: usize,
    },
    /// Rollback starts for this reason.
    RollbackStarted(Box<RollbackCause<usize>>),
    /// An operator retries a compensation-failed rollback: the failures are forgotten and
    /// compensation continues with the step that failed.
    RollbackResumed,
    /// The compensation of this completed step succeeded.
    Compensated {
        /// The step.
        step: usize,
    },
    /// The compensation of this completed step failed for good.
    CompensationFailed(Box<CompensationFailed>),
    /// A cancellation (`true`) or the deadline (`false`) came too late to stop the saga; it is
    /// not looked at again.
    StopIgnored {
        /// Which.
        cancelled: bool,
    },
    /// An operator resumed a parked saga: it goes on from where it stopped, its count of
    /// takeovers without progress starting again.
    Unparked,
    /// An operator retries a saga that failed after its pivot: the failure is forgotten and the
    /// failed step runs again.
    FailureCleared,
}

/// What [`Change::RetryScheduled`] records.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryScheduled {
    /// The step.
    pub step: usize,
    /// Action (or fallback) or compensation.
    pub phase: Phase,
    /// The wait.
    pub delay: Duration,
    /// The attempt's error.
    pub error: StepError,
}

impl RetryScheduled {
    /// Step `step` retries in `phase` after `delay`, for `error`.
    pub fn new(step: usize, phase: Phase, delay: Duration, error: StepError) -> Self {
        RetryScheduled {
            step,
            phase,
            delay,
            error,
        }
    }
}

/// What [`Change::StepFailed`] records.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StepFailed {
    /// The step.
    pub step: usize,
    /// The last attempt's error.
    pub error: StepError,
    /// Set when a cancellation or the deadline cut a retry wait short.
    pub stopped: Option<RollbackCause<usize>>,
    /// Set when the step timed out and is to be compensated anyway.
    pub compensate: Option<CompletedStep>,
}

impl StepFailed {
    /// Step `step` failed for good with `error`.
    pub fn new(step: usize, error: StepError) -> Self {
        StepFailed {
            step,
            error,
            stopped: None,
            compensate: None,
        }
    }
}

impl CompensationFailed {
    /// The compensation of step `step` failed for good with `error`.
    pub fn new(step: usize, error: StepError) -> Self {
        CompensationFailed { step, error }
    }
}

/// One transition of one saga, as the executor hands it to a store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Write {
    /// The event, appended to the history.
    pub event: SagaEvent,
    /// What changes in the state.
    pub change: Change,
    /// The new status, when it changes.
    pub status: Option<SagaStatus<usize>>,
    /// The new committed context, when a step or compensation committed.
    pub context: Option<StoredContext>,
}

impl Write {
    /// A write of `event` with `change`, and no new status or context.
    pub fn new(event: SagaEvent, change: Change) -> Self {
        Write {
            event,
            change,
            status: None,
            context: None,
        }
    }

    /// The same write, setting the status.
    pub fn with_status(mut self, status: Option<SagaStatus<usize>>) -> Self {
        self.status = status;
        self
    }

    /// The same write, committing a context.
    pub fn with_context(mut self, context: Option<StoredContext>) -> Self {
        self.context = context;
        self
    }

    /// Whether the saga made progress: a step or a compensation committed. A takeover counts
    /// the times a saga was taken over without progress in between.
    pub fn is_progress(&self) -> bool {
        self.change.is_progress()
    }
}

impl Change {
    /// Whether it is progress: a step or a compensation committed.
    pub fn is_progress(&self) -> bool {
        match self {
            Change::Completed(done) => !done.timed_out,
            Change::CompletedWithOutput(_) | Change::Compensated { .. } => true,
            _ => false,
        }
    }
}

impl SagaState {
    /// The state of a saga just recorded, not started.
    pub fn new(deadline: Option<SystemTime>) -> Self {
        SagaState {
            status: SagaStatus::Pending,
            completed: Vec::new(),
            rollback: None,
            active: Vec::new(),
            failure: None,
            compensation_failures: Vec::new(),
            deadline,
            recovery_attempts: 0,
            cancel_ignored: false,
            deadline_ignored: false,
            pivot: None,
            parked_from: None,
            outputs: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// The same state, recording the definition's parallel groups.
    pub fn with_groups(mut self, groups: Vec<std::ops::Range<usize>>) -> Self {
        self.groups = groups;
        self
    }

    /// The same state, recording the position of the definition's pivot step.
    pub fn with_pivot(mut self, pivot: Option<usize>) -> Self {
        self.pivot = pivot;
        self
    }

    /// Applies one write (its status and change; its context and event are the store's to keep).
    /// The only place where a saga's state changes.
    pub fn apply(&mut self, write: &Write) {
        self.apply_parts(write.status.as_ref(), &write.change, write.event.at);
    }

    /// [`SagaState::apply`] for a write taken apart (a store that encoded its event already):
    /// its status, its change and its event's time.
    pub fn apply_parts(
        &mut self,
        status: Option<&SagaStatus<usize>>,
        change: &Change,
        at: SystemTime,
    ) {
        if let Some(status) = status {
            if let (SagaStatus::Parked { .. }, false) = (status, self.status.is_terminal()) {
                self.parked_from = Some(Box::new(self.status.clone()));
            }
            self.status = status.clone();
        }
        if change.is_progress() {
            self.recovery_attempts = 0;
        }
        match change {
            Change::None => {}
            Change::AttemptStarted {
                step,
                phase,
                attempt,
            } => {
                let activity = self.activity(*step, *phase);
                // The same attempt recorded again (resumed after a crash) started when it first
                // did.
                if !(activity.in_flight && activity.attempt == *attempt) {
                    activity.started = Some(at);
                }
                activity.attempt = *attempt;
                activity.in_flight = true;
                activity.retry_at = None;
            }
            Change::RetryScheduled(retry) => {
                let activity = self.activity(retry.step, retry.phase);
                activity.in_flight = false;
                activity.retry_at = Some(at.checked_add(retry.delay).unwrap_or(at));
                activity.last_error = Some(Box::new(retry.error.clone()));
            }
            Change::Completed(done) => self.completed(*done),
            Change::CompletedWithOutput(done) => {
                let (done, output) = &**done;
                self.completed(*done);
                self.outputs.retain(|o| o.step != done.step);
                self.outputs
                    .push(RecordedOutput::new(done.step, output.clone()));
            }
            Change::StepFailed(failed) => {
                let step = failed.step;
                // Whether what failed was the step's fallback: its failure is then for good
                // even when another member's failure replaced the step's own in the meantime.
                let fallback_failed = self
                    .finish_activity(step, Phase::Action)
                    .is_some_and(|a| a.fallback);
                // In a parallel group, the first member that failed for good is the one the
                // rollback reports; one whose fallback still runs has not failed for good yet.
                let earlier = self.failure.as_ref().is_some_and(|failure| {
                    failure.step != step && !self.acting(failure.step, Phase::Action)
                });
                match &mut self.failure {
                    // The fallback failed too: the step's own error stays.
                    Some(failure) if failure.step == step && failure.fallback_tried => {
                        failure.stopped = failed.stopped.clone();
                    }
                    Some(_) if earlier => {}
                    failure => {
                        *failure = Some(Box::new(Failure {
                            step,
                            error: failed.error.clone(),
                            fallback_tried: fallback_failed,
                            stopped: failed.stopped.clone(),
                        }))
                    }
                }
                self.completed.extend(failed.compensate);
            }
            Change::FallbackStarted { step } => {
                if let Some(failure) = self.failure.as_mut().filter(|f| f.step == *step) {
                    failure.fallback_tried = true;
                }
                self.active.push(Activity::new(*step, Phase::Action, true));
            }
            Change::RollbackStarted(cause) => self.rollback = Some(cause.clone()),
            Change::RollbackResumed => self.compensation_failures.clear(),
            Change::Compensated { step } => {
                self.finish_activity(*step, Phase::Compensation);
                if let Some(done) = self
                    .completed
                    .iter_mut()
                    .rev()
                    .find(|d| d.step == *step && !d.compensated)
                {
                    done.compensated = true;
                }
            }
            Change::CompensationFailed(failed) => {
                self.finish_activity(failed.step, Phase::Compensation);
                self.compensation_failures.push((**failed).clone());
            }
            Change::StopIgnored { cancelled: true } => self.cancel_ignored = true,
            Change::StopIgnored { cancelled: false } => self.deadline_ignored = true,
            Change::Unparked => {
                self.parked_from = None;
                self.recovery_attempts = 0;
            }
            Change::FailureCleared => self.failure = None,
        }
    }

    /// Step `done.step` completed.
    fn completed(&mut self, done: CompletedStep) {
        self.finish_activity(done.step, Phase::Action);
        if self.failure.as_ref().is_some_and(|f| f.step == done.step) {
            // Its fallback stood in for it.
            self.failure = None;
        }
        self.completed.push(done);
    }

    /// The output step `step` recorded, if any.
    pub fn output(&self, step: usize) -> Option<&crate::OutputValue> {
        self.outputs
            .iter()
            .rev()
            .find(|o| o.step == step)
            .map(|o| &o.value)
    }

    /// The activity of `step` in `phase`, created if there is none (a compensation of a completed
    /// step uses that step's fallback's compensation when the fallback completed in its place).
    fn activity(&mut self, step: usize, phase: Phase) -> &mut Activity {
        match self
            .active
            .iter()
            .position(|a| a.step == step && a.phase == phase)
        {
            Some(i) => &mut self.active[i],
            None => {
                let fallback = phase == Phase::Compensation
                    && self
                        .completed
                        .iter()
                        .rev()
                        .find(|d| d.step == step)
                        .is_some_and(|d| d.via_fallback);
                // Room for one when there is none: a saga outside a parallel group works on one
                // step at a time, and a vector's first growth would make room for four (a few
                // hundred bytes kept by every saga in flight).
                if self.active.capacity() == 0 {
                    self.active.reserve_exact(1);
                }
                self.active.push(Activity::new(step, phase, fallback));
                self.active.last_mut().expect("just pushed")
            }
        }
    }

    /// Takes the activity of `step` in `phase` out of the active ones, if there is one.
    fn finish_activity(&mut self, step: usize, phase: Phase) -> Option<Activity> {
        let i = self
            .active
            .iter()
            .position(|a| a.step == step && a.phase == phase)?;
        Some(self.active.remove(i))
    }

    /// Whether step `step` is being worked on in `phase`: an attempt in flight or waiting.
    pub fn acting(&self, step: usize, phase: Phase) -> bool {
        self.active
            .iter()
            .any(|a| a.step == step && a.phase == phase)
    }

    /// When the attempt in flight of `step` in `phase` started, if one is.
    pub fn in_flight_since(&self, step: usize, phase: Phase) -> Option<SystemTime> {
        self.active
            .iter()
            .find(|a| a.step == step && a.phase == phase && a.in_flight)
            .and_then(|a| a.started)
    }

    /// The earliest time an activity waits for, if any waits.
    pub fn wake_at(&self) -> Option<SystemTime> {
        self.active
            .iter()
            .filter(|a| !a.in_flight)
            .filter_map(|a| a.retry_at)
            .min()
    }
}

/// `Option<SystemTime>` as milliseconds since the Unix epoch.
mod millis {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(
        time: &Option<SystemTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => serializer.serialize_some(&to_millis(*time)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let ms = Option::<u64>::deserialize(deserializer)?;
        Ok(ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }
}

/// A time of the state as its stored form keeps it: milliseconds since the Unix epoch (0
/// before it).
pub(crate) fn to_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
