//! What a saga does next: a pure function of its definition, its state and the time.
//!
//! A stage is a step alone or a parallel group; the members of a group are at work at once, so
//! the decision is asked again after each attempt it hands out, and told which attempts the run
//! performs (`running`): those are neither handed out again nor taken for lost.
//!
//! # Order
//!
//! 1. A terminal saga does nothing.
//! 2. An attempt whose intent is recorded but whose result is not, and that nobody here
//!    performs (the worker died), runs again, with the same attempt number, before anything
//!    else is looked at: it may have had effects, so its outcome must be known before the saga
//!    is stopped or rolled back.
//! 3. A step that failed for good and has a fallback not tried yet: the fallback starts (while
//!    a group's other members go on).
//! 4. A step waiting for its next attempt: a cancellation, a passed deadline or a step that
//!    failed for good stops the wait of an action (never of a compensation: a rollback must
//!    finish); otherwise the attempt runs when it is due.
//! 5. Rolling back: the compensations of the latest stage not yet compensated run (a group's at
//!    once), then the stage before; when none is left (or a compensation failed for good, unless
//!    the saga rolls back on a best-effort basis), the saga ends compensated or
//!    compensation-failed.
//! 6. A step that failed for good (its fallback failed too, or it has none): once the attempts
//!    of its group still in flight have ended, past the pivot the saga ends failed; otherwise
//!    rollback starts, reporting the first step that failed for good.
//! 7. Going forward: at a stage boundary a cancellation or a passed deadline starts a rollback
//!    (not past the pivot); otherwise the steps of the next stage not yet started start, and
//!    after the last stage the saga completes. With nothing to start, the run waits for an
//!    attempt it performs to end (`Busy`) or for a retry to be due (`Wait`).

use std::ops::Range;
use std::time::SystemTime;

use super::definition::Definition;
use super::state::{Activity, Failure, SagaState};
use crate::outcome::RollbackCause;
use crate::step::Phase;
use crate::{CompensationRetries, StepError};

/// One attempt to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Task {
    /// The step's position.
    pub(crate) step: usize,
    /// Action (or fallback) or compensation.
    pub(crate) phase: Phase,
    /// The step's fallback runs (or, in rollback, the fallback's compensation).
    pub(crate) fallback: bool,
    /// The attempt, from 1.
    pub(crate) attempt: u32,
}

/// The next move.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Run this attempt.
    Run(Task),
    /// Nothing to do before this time (a retry backoff).
    Wait(SystemTime),
    /// A step's retry wait is cut short by a cancellation or the deadline: it failed for good
    /// with its last error, and the saga rolls back for its cause. (This and the other rare
    /// decisions with a payload are boxed: a run keeps its decision while it acts on it, so the
    /// largest variant is in every run's future.)
    Stop(Box<Stop>),
    /// A step failed for good: its fallback starts.
    StartFallback(usize),
    /// Rollback starts.
    StartRollback(Box<RollbackCause<usize>>),
    /// Every step completed.
    Complete,
    /// A cancellation (`cancelled`) or the deadline came too late to stop the saga: recorded,
    /// then the saga goes on.
    IgnoreStop {
        /// A cancellation, or the deadline.
        cancelled: bool,
        /// Why it cannot stop the saga.
        reason: &'static str,
    },
    /// A step after the pivot failed for good: the saga ends failed.
    Fail {
        /// The step.
        step: usize,
        /// Its error.
        error: Box<StepError>,
    },
    /// Every completed step with a compensation was compensated.
    Compensated,
    /// Compensation failed for good (and stops there, or every step was tried).
    CompensationFailed,
    /// The saga is terminal.
    Done,
    /// Nothing to do until an attempt this run performs ends.
    Busy,
}

/// What [`Decision::Stop`] stops.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stop {
    /// The step.
    pub(crate) step: usize,
    /// Its last attempt.
    pub(crate) attempt: u32,
    /// That attempt's error.
    pub(crate) error: StepError,
    /// Why it stops.
    pub(crate) cause: RollbackCause<usize>,
}

/// What the saga does next. `running` holds the attempts this run is performing right now (the
/// members of a parallel group run at once): they are neither started again nor waited for as
/// if they were lost.
pub(crate) fn decide<D: Definition + ?Sized>(
    def: &D,
    state: &SagaState,
    now: SystemTime,
    cancelled: bool,
    running: &[(usize, Phase)],
) -> Decision {
    if state.status.is_terminal() {
        return Decision::Done;
    }
    let here = |a: &Activity| running.contains(&(a.step, a.phase));
    let task = |a: &Activity, attempt| Task {
        step: a.step,
        phase: a.phase,
        fallback: a.fallback,
        attempt,
    };
    // An attempt whose intent is recorded and result is not, performed by nobody here: the
    // worker that started it died. It runs again before anything else is looked at.
    if let Some(lost) = state
        .active
        .iter()
        .find(|a| !here(a) && (a.in_flight || a.attempt == 0))
    {
        return Decision::Run(task(lost, lost.attempt.max(1)));
    }
    if let Some(failure) = &state.failure {
        if failure.stopped.is_none()
            && !failure.fallback_tried
            && state.rollback.is_none()
            && def.has_fallback(failure.step)
        {
            return Decision::StartFallback(failure.step);
        }
    }
    let past_pivot = past_pivot(def, state);
    // A step that failed for good and that no fallback stands in for: the saga (or the group
    // the step is in) stops going forward.
    let failing = state
        .failure
        .as_ref()
        .filter(|f| f.stopped.is_some() || !state.acting(f.step, Phase::Action));
    // Looked at only when an action could be stopped (it clones the failure's error).
    let halt = || match failing {
        Some(failure) => Some(failure_cause(failure)),
        None => stop_cause(state, now, cancelled, past_pivot),
    };
    // Attempts waiting for their retry: an action's wait is cut short when the saga stops
    // going forward (never a compensation's: a rollback must finish); otherwise each runs when
    // it is due.
    let mut wake: Option<SystemTime> = None;
    for activity in state.active.iter().filter(|a| !here(a)) {
        if activity.phase == Phase::Action {
            if let Some(cause) = halt() {
                return Decision::Stop(Box::new(Stop {
                    step: activity.step,
                    attempt: activity.attempt,
                    error: activity
                        .last_error
                        .as_deref()
                        .cloned()
                        .unwrap_or_else(|| StepError::transient("stopped")),
                    cause,
                }));
            }
        }
        match activity.retry_at {
            Some(due) if now < due => wake = Some(wake.map_or(due, |w| w.min(due))),
            _ => return Decision::Run(task(activity, activity.attempt + 1)),
        }
    }
    // What to do while attempts run or wait: nothing until one ends or is due.
    let idle = || match wake {
        Some(due) => Decision::Wait(due),
        None => Decision::Busy,
    };
    if state.rollback.is_some() {
        return rollback(def, state, idle);
    }
    let acting_forward = state.active.iter().any(|a| a.phase == Phase::Action);
    if let Some(failure) = failing {
        // The group's members still running finish their attempt first: what they did is
        // compensated with the rest.
        if acting_forward {
            return idle();
        }
        if failure.stopped.is_none() && past_pivot {
            return Decision::Fail {
                step: failure.step,
                error: Box::new(failure.error.clone()),
            };
        }
        return Decision::StartRollback(Box::new(failure_cause(failure)));
    }
    let Some(stage) = current_stage(def, state) else {
        if let Some(ignored) = ignored_stop(state, now, cancelled, past_pivot) {
            return ignored;
        }
        return Decision::Complete;
    };
    if past_pivot {
        if let Some(ignored) = ignored_stop(state, now, cancelled, past_pivot) {
            return ignored;
        }
    }
    // No step failed (that returned above): only a cancellation or the deadline stops it.
    if let Some(cause) = stop_cause(state, now, cancelled, past_pivot) {
        return match acting_forward {
            true => idle(),
            false => Decision::StartRollback(Box::new(cause)),
        };
    }
    // Without groups the stage is the step after the latest completed, which is not completed.
    let to_start = match def.grouped() {
        false => Some(stage.start).filter(|_| !acting_forward),
        true => stage
            .into_iter()
            .find(|&step| !is_completed(state, step) && !state.acting(step, Phase::Action)),
    };
    match to_start {
        Some(step) => Decision::Run(Task {
            step,
            phase: Phase::Action,
            fallback: false,
            attempt: 1,
        }),
        None => idle(),
    }
}

/// Why a rollback for `failure` starts.
fn failure_cause(failure: &Failure) -> RollbackCause<usize> {
    match &failure.stopped {
        Some(cause) => cause.clone(),
        None => RollbackCause::StepFailed {
            step: failure.step,
            error: failure.error.clone(),
        },
    }
}

/// Whether step `step` completed (a step that timed out and is compensated anyway did not).
fn is_completed(state: &SagaState, step: usize) -> bool {
    state
        .completed
        .iter()
        .any(|d| d.step == step && !d.timed_out)
}

/// The steps going forward: the first stage (a step, or a parallel group) with a step not
/// completed yet, or `None` once every step completed. Stages complete in order, so it is the
/// latest completed step's stage or the one after.
fn current_stage<D: Definition + ?Sized>(def: &D, state: &SagaState) -> Option<Range<usize>> {
    let next = next_step(state);
    if !def.grouped() {
        return (next < def.len()).then_some(next..next + 1);
    }
    let stage = match next {
        0 => def.stage(0),
        next => {
            let latest = def.stage(next - 1);
            match latest.clone().all(|step| is_completed(state, step)) {
                true => def.stage(latest.end),
                false => latest,
            }
        }
    };
    (stage.start < def.len()).then_some(stage)
}

/// The next step going forward: the one after the latest completed.
pub(crate) fn next_step(state: &SagaState) -> usize {
    state
        .completed
        .iter()
        .filter(|d| !d.timed_out)
        .map(|d| d.step + 1)
        .max()
        .unwrap_or(0)
}

/// Whether a completed step was the point of no return.
pub(crate) fn past_pivot<D: Definition + ?Sized>(def: &D, state: &SagaState) -> bool {
    state
        .completed
        .iter()
        .any(|d| !d.timed_out && completes_pivot(def, d.step, d.via_fallback))
}

/// Whether step `step`, completed (through its fallback when `via_fallback`), is the point of no
/// return: a step declared `pivot` is, however it completed (its fallback stood in for it, with
/// the same consequences), and so is a fallback that declares itself one.
fn completes_pivot<D: Definition + ?Sized>(def: &D, step: usize, via_fallback: bool) -> bool {
    def.is_pivot(step, false) || (via_fallback && def.is_pivot(step, true))
}

/// At a step boundary where the saga cannot stop any more (past its pivot, or its last step
/// done), a cancellation or a passed deadline not recorded yet: it is recorded as ignored.
fn ignored_stop(
    state: &SagaState,
    now: SystemTime,
    cancelled: bool,
    past_pivot: bool,
) -> Option<Decision> {
    let reason = match past_pivot {
        true => "the saga had passed its pivot step and can no longer be rolled back",
        false => "the saga's last step had already started; nothing was left to stop",
    };
    if cancelled && !state.cancel_ignored {
        return Some(Decision::IgnoreStop {
            cancelled: true,
            reason,
        });
    }
    let deadline_passed = state.deadline.is_some_and(|deadline| now >= deadline);
    if deadline_passed && !state.deadline_ignored {
        return Some(Decision::IgnoreStop {
            cancelled: false,
            reason,
        });
    }
    None
}

/// Why the saga must stop going forward, if it must.
fn stop_cause(
    state: &SagaState,
    now: SystemTime,
    cancelled: bool,
    past_pivot: bool,
) -> Option<RollbackCause<usize>> {
    if past_pivot {
        return None;
    }
    if cancelled {
        return Some(RollbackCause::Cancelled);
    }
    match state.deadline {
        Some(deadline) if now >= deadline => Some(RollbackCause::DeadlineExceeded),
        _ => None,
    }
}

/// The next move of a saga that rolls back: the compensations of the latest stage not yet
/// compensated, at once (the members of a parallel group are compensated concurrently), then
/// the stage before. `idle` is what to do while those compensations run or wait.
fn rollback<D: Definition + ?Sized>(
    def: &D,
    state: &SagaState,
    idle: impl FnOnce() -> Decision,
) -> Decision {
    let compensating = state.active.iter().any(|a| a.phase == Phase::Compensation);
    if !state.compensation_failures.is_empty() && !def.options().best_effort_rollback {
        return match compensating {
            true => idle(),
            false => Decision::CompensationFailed,
        };
    }
    let mut pending = pending_compensations(def, state).peekable();
    let Some(&(latest, _)) = pending.peek() else {
        return match (compensating, state.compensation_failures.is_empty()) {
            (true, _) => idle(),
            (false, true) => Decision::Compensated,
            (false, false) => Decision::CompensationFailed,
        };
    };
    let stage = def.stage(latest);
    match pending
        .find(|(step, _)| stage.contains(step) && !state.acting(*step, Phase::Compensation))
    {
        Some((step, fallback)) => Decision::Run(Task {
            step,
            phase: Phase::Compensation,
            fallback,
            attempt: 1,
        }),
        None => idle(),
    }
}

/// Completed steps still to compensate, latest first: (step, via its fallback).
pub(crate) fn pending_compensations<'a, D: Definition + ?Sized>(
    def: &'a D,
    state: &'a SagaState,
) -> impl Iterator<Item = (usize, bool)> + 'a {
    state
        .completed
        .iter()
        .rev()
        .filter(|d| !d.compensated && def.compensates(d.step, d.via_fallback))
        .filter(|d| !state.compensation_failures.iter().any(|f| f.step == d.step))
        .map(|d| (d.step, d.via_fallback))
}

/// Whether a failed attempt is followed by another.
pub(crate) fn retries_after<D: Definition + ?Sized>(
    def: &D,
    task: &Task,
    error: &StepError,
) -> bool {
    if !error.is_retryable() {
        return false;
    }
    let policy = def.policy(task.step, task.fallback);
    let retries = match (task.phase, policy.compensation_retries) {
        (Phase::Action, _) => policy.retries,
        (Phase::Compensation, CompensationRetries::Limited(n)) => n,
        (Phase::Compensation, CompensationRetries::Forever) => return true,
    };
    task.attempt <= retries
}

#[cfg(test)]
mod tests;
