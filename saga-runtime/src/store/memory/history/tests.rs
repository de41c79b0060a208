use std::time::{Duration, SystemTime};

use super::*;
use crate::outcome::RollbackCause;
use crate::StepError;

const STEPS: &[&str] = &["reserve", "charge", "ship"];

fn name(step: &str) -> Cow<'static, str> {
    Cow::Owned(step.to_owned())
}

/// Writes that take the short form: (kind, change).
fn common() -> Vec<(SagaEventKind, Change)> {
    vec![
        (
            SagaEventKind::SagaStarted {
                steps: STEPS.iter().map(|s| name(s)).collect(),
            },
            Change::None,
        ),
        (
            SagaEventKind::StepStarted {
                step: name("charge"),
                phase: Phase::Action,
                attempt: 1,
            },
            Change::AttemptStarted {
                step: 1,
                phase: Phase::Action,
                attempt: 1,
            },
        ),
        (
            SagaEventKind::StepStarted {
                step: name("ship"),
                phase: Phase::Compensation,
                attempt: u32::MAX,
            },
            Change::AttemptStarted {
                step: 2,
                phase: Phase::Compensation,
                attempt: u32::MAX,
            },
        ),
        (
            SagaEventKind::StepCompleted {
                step: name("reserve"),
                attempt: 2,
                duration: Duration::new(3, 5),
                output: None,
            },
            Change::Completed(CompletedStep {
                step: 0,
                via_fallback: false,
                compensated: false,
                timed_out: false,
            }),
        ),
        (
            SagaEventKind::StepCompensated {
                step: name("charge"),
                attempt: 7,
            },
            Change::Compensated { step: 1 },
        ),
        (
            SagaEventKind::SagaCompleted {
                duration: Duration::from_millis(12),
            },
            Change::None,
        ),
        (
            SagaEventKind::SagaCompensated {
                duration: Duration::ZERO,
            },
            Change::None,
        ),
    ]
}

/// Writes that look like a common one but carry something the short form cannot hold, and
/// writes of other kinds: each is kept whole.
fn whole() -> Vec<(SagaEventKind, Change)> {
    let completed = |step| {
        Change::Completed(CompletedStep {
            step,
            via_fallback: false,
            compensated: false,
            timed_out: false,
        })
    };
    let completion = |step: &str, output| SagaEventKind::StepCompleted {
        step: name(step),
        attempt: 1,
        duration: Duration::from_millis(1),
        output,
    };
    vec![
        // Steps other than the definition's.
        (
            SagaEventKind::SagaStarted {
                steps: vec![name("reserve")],
            },
            Change::None,
        ),
        // A fallback's name at a step's position.
        (
            SagaEventKind::StepStarted {
                step: name("charge_by_invoice"),
                phase: Phase::Action,
                attempt: 1,
            },
            Change::AttemptStarted {
                step: 1,
                phase: Phase::Action,
                attempt: 1,
            },
        ),
        // A position past the definition's steps.
        (
            SagaEventKind::StepCompensated {
                step: name("ship"),
                attempt: 1,
            },
            Change::Compensated { step: 3 },
        ),
        // An event and a change that disagree.
        (
            SagaEventKind::StepStarted {
                step: name("charge"),
                phase: Phase::Action,
                attempt: 2,
            },
            Change::AttemptStarted {
                step: 1,
                phase: Phase::Action,
                attempt: 1,
            },
        ),
        (completion("charge", None), completed(0)),
        (completion("charge", None), Change::None),
        // An output, and the flags of a fallback or a timeout.
        (
            completion(
                "charge",
                Some(crate::OutputValue::from_json(serde_json::json!({"n": 1}))),
            ),
            completed(1),
        ),
        (
            completion("charge", None),
            Change::Completed(CompletedStep {
                step: 1,
                via_fallback: true,
                compensated: false,
                timed_out: false,
            }),
        ),
        (
            completion("charge", None),
            Change::Completed(CompletedStep {
                step: 1,
                via_fallback: false,
                compensated: false,
                timed_out: true,
            }),
        ),
        // A duration past 64 bits of nanoseconds.
        (
            SagaEventKind::SagaCompleted {
                duration: Duration::new(u64::MAX, 0),
            },
            Change::None,
        ),
        (
            SagaEventKind::CompensationStarted {
                reason: RollbackCause::Cancelled,
            },
            Change::RollbackStarted(Box::new(RollbackCause::Cancelled)),
        ),
        (
            SagaEventKind::StepFailed {
                step: name("ship"),
                attempt: 1,
                error: StepError::permanent("out of stock"),
            },
            Change::None,
        ),
    ]
}

fn is_whole(recorded: &Recorded) -> bool {
    matches!(recorded.what, What::Other(_))
}

#[test]
fn the_common_writes_are_kept_short_and_read_back_as_written() {
    let at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123);
    for (kind, change) in common() {
        let recorded = Recorded::new(at, kind.clone(), change.clone(), STEPS);
        assert!(!is_whole(&recorded), "{kind:?} was kept whole");
        assert_eq!(recorded.at, at);
        assert_eq!(recorded.kind(STEPS), kind);
        assert_eq!(*recorded.change(), change);
    }
}

#[test]
fn any_other_write_is_kept_whole_and_read_back_as_written() {
    let at = SystemTime::UNIX_EPOCH;
    for (kind, change) in whole() {
        let recorded = Recorded::new(at, kind.clone(), change.clone(), STEPS);
        assert!(
            is_whole(&recorded),
            "{kind:?} with {change:?} was kept short"
        );
        assert_eq!(recorded.kind(STEPS), kind);
        assert_eq!(*recorded.change(), change);
    }
}

#[test]
fn a_write_takes_40_bytes() {
    // The point of the short form: a saga's history is allocated whole when it starts.
    assert!(std::mem::size_of::<Recorded>() <= 40);
}
