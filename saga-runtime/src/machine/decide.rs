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
    /// with its last error, and the saga rolls back for `cause`.
    Stop {
        /// The step.
        step: usize,
        /// Its last attempt.
        attempt: u32,
        /// That attempt's error.
        error: StepError,
        /// Why it stops.
        cause: RollbackCause<usize>,
    },
    /// A step failed for good: its fallback starts.
    StartFallback(usize),
    /// Rollback starts.
    StartRollback(RollbackCause<usize>),
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
        error: StepError,
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
                return Decision::Stop {
                    step: activity.step,
                    attempt: activity.attempt,
                    error: activity
                        .last_error
                        .clone()
                        .unwrap_or_else(|| StepError::transient("stopped")),
                    cause,
                };
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
                error: failure.error.clone(),
            };
        }
        return Decision::StartRollback(failure_cause(failure));
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
            false => Decision::StartRollback(cause),
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
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::machine::state::{Change, CompletedStep, RetryScheduled, StepFailed, Write};
    use crate::{SagaOptions, StepPolicy, Undo};

    /// A definition of `n` steps: step `pivot` is the pivot, the others compensate, and step
    /// `fallback` has a fallback.
    struct Plan {
        n: usize,
        pivot: Option<usize>,
        fallback: Option<usize>,
        /// A second step with a fallback.
        fallback_too: Option<usize>,
        group: Option<Range<usize>>,
    }

    impl Definition for Plan {
        fn options(&self) -> SagaOptions {
            SagaOptions::DEFAULT
        }
        fn len(&self) -> usize {
            self.n
        }
        fn policy(&self, step: usize, _: bool) -> StepPolicy {
            StepPolicy {
                retries: 2,
                undo: match Some(step) == self.pivot {
                    true => Undo::Pivot,
                    false => Undo::Compensate,
                },
                ..StepPolicy::DEFAULT
            }
        }
        fn has_fallback(&self, step: usize) -> bool {
            Some(step) == self.fallback || Some(step) == self.fallback_too
        }
        fn compensates(&self, step: usize, _: bool) -> bool {
            Some(step) != self.pivot
        }
        fn stage(&self, step: usize) -> Range<usize> {
            match &self.group {
                Some(group) if group.contains(&step) => group.clone(),
                _ => step..step + 1,
            }
        }
        fn grouped(&self) -> bool {
            self.group.is_some()
        }
    }

    const PLAN: Plan = Plan {
        n: 3,
        pivot: None,
        fallback: None,
        fallback_too: None,
        group: None,
    };

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn apply(state: &mut SagaState, change: Change) {
        let event = crate::event::SagaEvent {
            saga_id: crate::SagaId::new(),
            saga_type: "T".into(),
            at: at(10),
            kind: crate::SagaEventKind::SagaResumed {
                recovery_attempt: 0,
            },
        };
        state.apply(&Write::new(event, change));
    }

    fn run(step: usize, phase: Phase, attempt: u32) -> Decision {
        Decision::Run(Task {
            step,
            phase,
            fallback: false,
            attempt,
        })
    }

    #[test]
    fn forward_then_complete() {
        let mut state = SagaState::new(None);
        assert_eq!(
            decide(&PLAN, &state, at(0), false, &[]),
            run(0, Phase::Action, 1)
        );
        for step in 0..3 {
            apply(
                &mut state,
                Change::Completed(CompletedStep::new(step, false)),
            );
        }
        assert_eq!(decide(&PLAN, &state, at(0), false, &[]), Decision::Complete);
    }

    #[test]
    fn an_attempt_in_flight_runs_again_even_when_cancelled_or_past_the_deadline() {
        let mut state = SagaState::new(Some(at(5)));
        apply(
            &mut state,
            Change::AttemptStarted {
                step: 0,
                phase: Phase::Action,
                attempt: 2,
            },
        );
        assert_eq!(
            decide(&PLAN, &state, at(9), true, &[]),
            run(0, Phase::Action, 2)
        );
    }

    #[test]
    fn a_retry_waits_until_due_and_a_cancellation_cuts_the_wait_short() {
        let mut state = SagaState::new(None);
        apply(&mut state, Change::Completed(CompletedStep::new(0, false)));
        apply(
            &mut state,
            Change::AttemptStarted {
                step: 1,
                phase: Phase::Action,
                attempt: 1,
            },
        );
        apply(
            &mut state,
            Change::RetryScheduled(Box::new(RetryScheduled::new(
                1,
                Phase::Action,
                Duration::from_secs(5),
                StepError::transient("busy"),
            ))),
        );
        assert_eq!(
            decide(&PLAN, &state, at(12), false, &[]),
            Decision::Wait(at(15))
        );
        assert_eq!(
            decide(&PLAN, &state, at(15), false, &[]),
            run(1, Phase::Action, 2)
        );
        assert!(matches!(
            decide(&PLAN, &state, at(12), true, &[]),
            Decision::Stop {
                step: 1,
                attempt: 1,
                cause: RollbackCause::Cancelled,
                ..
            }
        ));
    }

    #[test]
    fn a_failure_falls_back_then_rolls_back_latest_first() {
        let plan = Plan {
            fallback: Some(2),
            ..PLAN
        };
        let mut state = SagaState::new(None);
        apply(&mut state, Change::Completed(CompletedStep::new(0, false)));
        apply(&mut state, Change::Completed(CompletedStep::new(1, false)));
        let failed = Change::StepFailed(Box::new(StepFailed::new(2, StepError::permanent("no"))));
        apply(&mut state, failed.clone());
        assert_eq!(
            decide(&plan, &state, at(0), false, &[]),
            Decision::StartFallback(2)
        );
        apply(&mut state, Change::FallbackStarted { step: 2 });
        apply(&mut state, failed);
        let cause = match decide(&plan, &state, at(0), false, &[]) {
            Decision::StartRollback(cause) => cause,
            other => panic!("{other:?}"),
        };
        apply(&mut state, Change::RollbackStarted(Box::new(cause)));
        assert_eq!(
            decide(&plan, &state, at(0), false, &[]),
            run(1, Phase::Compensation, 1)
        );
        apply(&mut state, Change::Compensated { step: 1 });
        assert_eq!(
            decide(&plan, &state, at(0), false, &[]),
            run(0, Phase::Compensation, 1)
        );
        apply(&mut state, Change::Compensated { step: 0 });
        assert_eq!(
            decide(&plan, &state, at(0), false, &[]),
            Decision::Compensated
        );
    }

    #[test]
    fn past_the_pivot_a_failure_ends_failed_and_cancellation_is_ignored() {
        let plan = Plan {
            pivot: Some(0),
            ..PLAN
        };
        let mut state = SagaState::new(Some(at(1)));
        apply(&mut state, Change::Completed(CompletedStep::new(0, false)));
        // A cancellation, then the passed deadline, are recorded as ignored, once each.
        let reason = "the saga had passed its pivot step and can no longer be rolled back";
        assert_eq!(
            decide(&plan, &state, at(9), true, &[]),
            Decision::IgnoreStop {
                cancelled: true,
                reason
            }
        );
        apply(&mut state, Change::StopIgnored { cancelled: true });
        assert_eq!(
            decide(&plan, &state, at(9), true, &[]),
            Decision::IgnoreStop {
                cancelled: false,
                reason
            }
        );
        apply(&mut state, Change::StopIgnored { cancelled: false });
        assert_eq!(
            decide(&plan, &state, at(9), true, &[]),
            run(1, Phase::Action, 1)
        );
        apply(
            &mut state,
            Change::StepFailed(Box::new(StepFailed::new(1, StepError::permanent("no")))),
        );
        assert!(matches!(
            decide(&plan, &state, at(0), false, &[]),
            Decision::Fail { step: 1, .. }
        ));
    }

    #[test]
    fn a_group_starts_its_members_together_and_a_failure_waits_for_the_one_in_flight() {
        // Step 0, then 1 and 2 at once, then 3.
        let plan = Plan {
            n: 4,
            group: Some(1..3),
            ..PLAN
        };
        let started = |step| Change::AttemptStarted {
            step,
            phase: Phase::Action,
            attempt: 1,
        };
        let mut state = SagaState::new(None);
        apply(&mut state, Change::Completed(CompletedStep::new(0, false)));
        assert_eq!(
            decide(&plan, &state, at(0), false, &[]),
            run(1, Phase::Action, 1)
        );
        apply(&mut state, started(1));
        let mut running = vec![(1, Phase::Action)];
        assert_eq!(
            decide(&plan, &state, at(0), false, &running),
            run(2, Phase::Action, 1),
            "the second member starts while the first runs"
        );
        apply(&mut state, started(2));
        running.push((2, Phase::Action));
        assert_eq!(
            decide(&plan, &state, at(0), false, &running),
            Decision::Busy
        );
        // Without the run that performs them (a crash), both run again.
        assert_eq!(
            decide(&plan, &state, at(0), false, &[]),
            run(1, Phase::Action, 1)
        );
        // Member 2 fails for good: nothing else starts until member 1's attempt ends.
        apply(
            &mut state,
            Change::StepFailed(Box::new(StepFailed::new(2, StepError::permanent("no")))),
        );
        running.retain(|r| r.0 != 2);
        assert_eq!(
            decide(&plan, &state, at(0), false, &running),
            Decision::Busy
        );
        apply(&mut state, Change::Completed(CompletedStep::new(1, false)));
        let cause = match decide(&plan, &state, at(0), false, &[]) {
            Decision::StartRollback(cause) => cause,
            other => panic!("{other:?}"),
        };
        assert!(matches!(cause, RollbackCause::StepFailed { step: 2, .. }));
        apply(&mut state, Change::RollbackStarted(Box::new(cause)));
        // Member 1 is compensated; step 0 only once it is.
        assert_eq!(
            decide(&plan, &state, at(0), false, &[]),
            run(1, Phase::Compensation, 1)
        );
        apply(
            &mut state,
            Change::AttemptStarted {
                step: 1,
                phase: Phase::Compensation,
                attempt: 1,
            },
        );
        assert_eq!(
            decide(&plan, &state, at(0), false, &[(1, Phase::Compensation)]),
            Decision::Busy
        );
        apply(&mut state, Change::Compensated { step: 1 });
        assert_eq!(
            decide(&plan, &state, at(0), false, &[]),
            run(0, Phase::Compensation, 1)
        );
    }

    #[test]
    fn a_members_failed_fallback_is_not_tried_again_after_a_siblings_fallback_completed() {
        // Members 1 and 2 both have fallbacks.
        let plan = Plan {
            n: 4,
            group: Some(1..3),
            fallback: Some(1),
            fallback_too: Some(2),
            ..PLAN
        };
        let failed =
            |step| Change::StepFailed(Box::new(StepFailed::new(step, StepError::permanent("no"))));
        let mut state = SagaState::new(None);
        apply(&mut state, Change::Completed(CompletedStep::new(0, false)));
        apply(&mut state, failed(1));
        assert_eq!(
            decide(&plan, &state, at(0), false, &[]),
            Decision::StartFallback(1)
        );
        apply(&mut state, Change::FallbackStarted { step: 1 });
        // While member 1's fallback runs, member 2 fails for good and its fallback completes;
        // then member 1's fallback fails.
        apply(&mut state, failed(2));
        assert_eq!(
            decide(&plan, &state, at(0), false, &[(1, Phase::Action)]),
            Decision::StartFallback(2)
        );
        apply(&mut state, Change::FallbackStarted { step: 2 });
        apply(&mut state, Change::Completed(CompletedStep::new(2, true)));
        apply(&mut state, failed(1));
        match decide(&plan, &state, at(0), false, &[]) {
            Decision::StartRollback(RollbackCause::StepFailed { step: 1, .. }) => {}
            other => panic!("member 1's fallback must not run again: {other:?}"),
        }
    }

    #[test]
    fn attempts_follow_the_policy() {
        let task = |attempt| Task {
            step: 0,
            phase: Phase::Action,
            fallback: false,
            attempt,
        };
        let transient = StepError::transient("x");
        assert!(retries_after(&PLAN, &task(2), &transient));
        assert!(!retries_after(&PLAN, &task(3), &transient), "3 attempts");
        assert!(!retries_after(&PLAN, &task(1), &StepError::permanent("x")));
    }
}
