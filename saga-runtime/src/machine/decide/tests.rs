//! The decision, case by case.

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
    match decide(&PLAN, &state, at(12), true, &[]) {
        Decision::Stop(stop) => assert!(matches!(
            *stop,
            Stop {
                step: 1,
                attempt: 1,
                cause: RollbackCause::Cancelled,
                ..
            }
        )),
        other => panic!("a cancellation cuts the retry wait short: {other:?}"),
    }
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
    apply(&mut state, Change::RollbackStarted(cause));
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
    assert!(matches!(*cause, RollbackCause::StepFailed { step: 2, .. }));
    apply(&mut state, Change::RollbackStarted(cause));
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
        Decision::StartRollback(cause)
            if matches!(*cause, RollbackCause::StepFailed { step: 1, .. }) => {}
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
