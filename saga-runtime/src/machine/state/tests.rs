//! The fold of writes into a state, and the state's encoding.
use std::borrow::Cow;

use super::*;
use crate::event::SagaEventKind;
use crate::SagaId;

fn write(change: Change) -> Write {
    let event = SagaEvent {
        saga_id: SagaId::new(),
        saga_type: Cow::Borrowed("T"),
        at: UNIX_EPOCH + Duration::from_secs(100),
        kind: SagaEventKind::SagaResumed {
            recovery_attempt: 1,
        },
    };
    Write::new(event, change)
}

#[test]
fn attempts_retries_and_completion_fold_into_the_state() {
    let mut state = SagaState::new(None);
    state.apply(&write(Change::AttemptStarted {
        step: 0,
        phase: Phase::Action,
        attempt: 1,
    }));
    assert!(state.active[0].in_flight);
    state.apply(&write(Change::RetryScheduled(Box::new(
        RetryScheduled::new(
            0,
            Phase::Action,
            Duration::from_secs(5),
            StepError::transient("busy"),
        ),
    ))));
    let activity = &state.active[0];
    assert!(!activity.in_flight);
    assert_eq!(
        activity.retry_at,
        Some(UNIX_EPOCH + Duration::from_secs(105))
    );
    assert_eq!(state.wake_at(), activity.retry_at);
    state.recovery_attempts = 3;
    state.apply(&write(Change::Completed(CompletedStep::new(0, false))));
    assert!(state.active.is_empty());
    assert_eq!(state.completed, [CompletedStep::new(0, false)]);
    assert_eq!(state.recovery_attempts, 0, "progress");
}

#[test]
fn a_failed_fallback_keeps_the_steps_own_error() {
    let mut state = SagaState::new(None);
    let failed = |error: &'static str| {
        Change::StepFailed(Box::new(StepFailed::new(1, StepError::permanent(error))))
    };
    state.apply(&write(failed("own")));
    state.apply(&write(Change::FallbackStarted { step: 1 }));
    assert!(state.active[0].fallback);
    state.apply(&write(failed("fallback's")));
    let failure = state.failure.as_ref().unwrap();
    assert_eq!(failure.error.message(), "own");
    assert!(failure.fallback_tried);
}

#[test]
fn the_state_round_trips_through_json_with_times_in_milliseconds() {
    let mut state = SagaState::new(Some(UNIX_EPOCH + Duration::from_millis(1_500)));
    state.apply(&write(Change::RetryScheduled(Box::new(
        RetryScheduled::new(
            2,
            Phase::Compensation,
            Duration::from_millis(250),
            StepError::transient("x"),
        ),
    ))));
    let json = serde_json::to_string(&state).unwrap();
    assert!(json.contains("\"deadline\":1500"), "{json}");
    assert!(json.contains("\"retry_at\":100250"), "{json}");
    let back: SagaState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
}
