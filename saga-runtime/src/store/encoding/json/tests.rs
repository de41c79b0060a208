//! The hand-written JSON against serde_json's, for every event kind and every field of a state.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::machine::Failure;
use crate::outcome::RollbackCause;
use crate::output::{OutputValue, RecordedOutput};
use crate::{OperatorRequest, StepError};

/// Each value written both ways is the same text.
fn same<T: Serialize + ?Sized>(value: &T, write: impl Fn(&mut Vec<u8>, &T) -> Result) {
    let ours = to_string(value, 0, write).unwrap();
    let theirs = serde_json::to_string(value).unwrap();
    assert_eq!(ours, theirs);
}

fn names() -> [Cow<'static, str>; 4] {
    [
        "reserve".into(),
        "quote \" and \\ back".into(),
        "line\nbreak, tab\t, bell \u{7}".into(),
        "ünïcödé ✓".into(),
    ]
}

fn error() -> StepError {
    StepError::permanent("card \"declined\"\n")
}

/// One event of every kind (two of some), `step` their step's name.
pub(in crate::store::encoding) fn every_kind(step: &str) -> Vec<SagaEventKind> {
    let step: Cow<'static, str> = step.to_owned().into();
    let output = OutputValue::from_json(serde_json::json!({"n": 1, "s": "x\ny"}));
    vec![
        SagaEventKind::SagaStarted {
            steps: names().to_vec(),
        },
        SagaEventKind::SagaStarted { steps: vec![] },
        SagaEventKind::StepStarted {
            step: step.clone(),
            phase: Phase::Action,
            attempt: 1,
        },
        SagaEventKind::StepStarted {
            step: step.clone(),
            phase: Phase::Compensation,
            attempt: u32::MAX,
        },
        SagaEventKind::RetryScheduled {
            step: step.clone(),
            phase: Phase::Action,
            attempt: 2,
            delay: Duration::new(3, 400),
            error: StepError::transient("busy"),
        },
        SagaEventKind::StepCompleted {
            step: step.clone(),
            attempt: 1,
            duration: Duration::new(0, 3_000_000),
            output: None,
        },
        SagaEventKind::StepCompleted {
            step: step.clone(),
            attempt: 3,
            duration: Duration::new(u64::MAX, 999_999_999),
            output: Some(output),
        },
        SagaEventKind::StepFailed {
            step: step.clone(),
            attempt: 1,
            error: error(),
        },
        SagaEventKind::FallbackStarted {
            step: step.clone(),
            fallback: step.clone(),
        },
        SagaEventKind::CompensationStarted {
            reason: RollbackCause::StepFailed {
                step: step.clone(),
                error: error(),
            },
        },
        SagaEventKind::CompensationStarted {
            reason: RollbackCause::Cancelled,
        },
        SagaEventKind::StepCompensated {
            step: step.clone(),
            attempt: 1,
        },
        SagaEventKind::CompensationFailed {
            step: step.clone(),
            attempt: 4,
            error: error(),
        },
        SagaEventKind::SagaResumed {
            recovery_attempt: 2,
        },
        SagaEventKind::StopIgnored {
            cancelled: true,
            reason: step.to_string(),
        },
        SagaEventKind::StopIgnored {
            cancelled: false,
            reason: String::new(),
        },
        SagaEventKind::SagaParked {
            reason: step.to_string(),
        },
        SagaEventKind::SagaReopened {
            request: OperatorRequest::Retry,
        },
        SagaEventKind::SagaCompleted {
            duration: Duration::from_millis(12),
        },
        SagaEventKind::SagaCompensated {
            duration: Duration::ZERO,
        },
        SagaEventKind::SagaFailed {
            step,
            error: error(),
            compensation: true,
        },
    ]
}

#[test]
fn every_event_kind_is_written_as_serde_writes_it() {
    for name in names() {
        for kind in every_kind(&name) {
            same(&kind, event_kind);
        }
    }
}

#[test]
fn every_status_is_written_as_serde_writes_it() {
    let statuses = [
        SagaStatus::Pending,
        SagaStatus::Running { step: 0 },
        SagaStatus::Compensating { step: 7 },
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::CompensationFailed { step: usize::MAX },
        SagaStatus::Failed { step: 2 },
        SagaStatus::Parked {
            reason: "the definition \"changed\"".into(),
        },
        SagaStatus::Parked {
            reason: "gone".into(),
        },
    ];
    for status in &statuses {
        same(status, super::status);
    }
}

#[test]
fn a_state_is_written_as_serde_writes_it_with_each_field_set_or_not() {
    let at = UNIX_EPOCH + Duration::new(1_796_470_480, 538_466_363);
    let bare = SagaState::new(None);
    same(&bare, state);

    let mut full = SagaState::new(Some(at));
    full.status = SagaStatus::Running { step: 2 };
    full.completed = vec![
        CompletedStep::new(0, false),
        CompletedStep {
            compensated: true,
            ..CompletedStep::new(1, true)
        },
        CompletedStep::timed_out(2, false),
    ];
    full.rollback = Some(Box::new(RollbackCause::StepFailed {
        step: 1,
        error: error(),
    }));
    let mut busy = Activity::new(2, Phase::Action, true);
    busy.attempt = 3;
    busy.in_flight = true;
    busy.started = Some(at);
    busy.retry_at = Some(at + Duration::from_secs(1));
    busy.last_error = Some(Box::new(StepError::transient("timeout")));
    full.active = vec![busy, Activity::new(3, Phase::Compensation, false)];
    full.failure = Some(Box::new(Failure {
        step: 1,
        error: error(),
        fallback_tried: true,
        stopped: Some(RollbackCause::DeadlineExceeded),
    }));
    full.compensation_failures = vec![CompensationFailed::new(0, error())];
    full.recovery_attempts = 3;
    full.cancel_ignored = true;
    full.deadline_ignored = true;
    full.pivot = Some(1);
    full.parked_from = Some(Box::new(SagaStatus::Compensating { step: 1 }));
    full.outputs = vec![RecordedOutput::new(
        0,
        OutputValue::from_json(serde_json::json!([1, "two"])),
    )];
    full.groups = vec![1..3, 4..6];
    same(&full, state);

    // And every field alone (each one set, the rest as a new saga has them).
    type Set<'a> = Box<dyn Fn(&mut SagaState) + 'a>;
    let fields: Vec<Set> = vec![
        Box::new(|s| s.completed = full.completed.clone()),
        Box::new(|s| s.rollback = full.rollback.clone()),
        Box::new(|s| s.active = full.active.clone()),
        Box::new(|s| s.failure = full.failure.clone()),
        Box::new(|s| s.compensation_failures = full.compensation_failures.clone()),
        Box::new(|s| s.deadline = full.deadline),
        Box::new(|s| s.recovery_attempts = 1),
        Box::new(|s| s.cancel_ignored = true),
        Box::new(|s| s.deadline_ignored = true),
        Box::new(|s| s.pivot = Some(0)),
        Box::new(|s| s.parked_from = full.parked_from.clone()),
        Box::new(|s| s.outputs = full.outputs.clone()),
        Box::new(|s| s.groups = full.groups.clone()),
    ];
    for set in &fields {
        let mut one = SagaState::new(None);
        set(&mut one);
        assert_ne!(one, bare);
        same(&one, state);
    }
}

#[test]
fn times_before_1970_are_left_to_the_caller() {
    let mut out = Vec::new();
    assert!(system_time(&mut out, UNIX_EPOCH - Duration::from_secs(1)).is_none());
    assert!(out.is_empty());
    let at = UNIX_EPOCH + Duration::new(5, 6);
    system_time(&mut out, at).unwrap();
    assert_eq!(out, serde_json::to_vec(&at).unwrap());
}
