//! One write of a saga's history, as the in-memory store keeps it.
//!
//! Nearly every history is made of six kinds of write (the saga's start, a step's start, its
//! completion without an output, its compensation, the saga's completion or compensation), and
//! in each of them the change follows from the event and the step's name from its position. Those
//! are kept in 40 bytes (the step's position standing for its name, the change not kept at all);
//! any other write whole, boxed. A write kept as an event and a change took 136 bytes, and a
//! saga's history is allocated whole when it starts (see `Entry::new`): 1 KB of every saga in
//! flight, where a few hundred bytes is the aim.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use crate::event::SagaEventKind;
use crate::machine::{Change, CompletedStep};
use crate::step::Phase;

/// One write: when, and what it recorded.
#[derive(Debug)]
pub(super) struct Recorded {
    pub(super) at: SystemTime,
    what: What,
}

/// What a write recorded: one of the common writes, by step position, or any write whole.
#[derive(Debug)]
enum What {
    /// The saga started with its definition's steps; nothing changed but the status.
    SagaStarted,
    /// An attempt's intent.
    StepStarted {
        step: u32,
        attempt: u32,
        phase: Phase,
    },
    /// A step's action completed, with no output to keep.
    StepCompleted { step: u32, attempt: u32, nanos: u64 },
    /// A step's compensation succeeded.
    StepCompensated { step: u32, attempt: u32 },
    /// The saga completed, after this long.
    SagaCompleted { nanos: u64 },
    /// The saga's rollback ended, after this long.
    SagaCompensated { nanos: u64 },
    /// Any other write.
    Other(Box<(SagaEventKind, Change)>),
}

impl Recorded {
    /// A write of `kind` and `change` at `at`, of a saga whose definition's steps are `steps`.
    pub(super) fn new(
        at: SystemTime,
        kind: SagaEventKind,
        change: Change,
        steps: &[&'static str],
    ) -> Self {
        let what = What::common(&kind, &change, steps)
            .unwrap_or_else(|| What::Other(Box::new((kind, change))));
        Recorded { at, what }
    }

    /// The write's event kind, its step names from `steps` (as it was written with).
    pub(super) fn kind(&self, steps: &[&'static str]) -> SagaEventKind {
        let name = |step: u32| Cow::Borrowed(steps[step as usize]);
        match self.what {
            What::SagaStarted => SagaEventKind::SagaStarted {
                steps: steps.iter().map(|s| Cow::Borrowed(*s)).collect(),
            },
            What::StepStarted {
                step,
                attempt,
                phase,
            } => SagaEventKind::StepStarted {
                step: name(step),
                phase,
                attempt,
            },
            What::StepCompleted {
                step,
                attempt,
                nanos,
            } => SagaEventKind::StepCompleted {
                step: name(step),
                attempt,
                duration: Duration::from_nanos(nanos),
                output: None,
            },
            What::StepCompensated { step, attempt } => SagaEventKind::StepCompensated {
                step: name(step),
                attempt,
            },
            What::SagaCompleted { nanos } => SagaEventKind::SagaCompleted {
                duration: Duration::from_nanos(nanos),
            },
            What::SagaCompensated { nanos } => SagaEventKind::SagaCompensated {
                duration: Duration::from_nanos(nanos),
            },
            What::Other(ref whole) => whole.0.clone(),
        }
    }

    /// What the write changed in the saga's state, besides its status.
    pub(super) fn change(&self) -> Cow<'_, Change> {
        Cow::Owned(match self.what {
            What::SagaStarted | What::SagaCompleted { .. } | What::SagaCompensated { .. } => {
                Change::None
            }
            What::StepStarted {
                step,
                attempt,
                phase,
            } => Change::AttemptStarted {
                step: step as usize,
                phase,
                attempt,
            },
            What::StepCompleted { step, .. } => Change::Completed(CompletedStep {
                step: step as usize,
                via_fallback: false,
                compensated: false,
                timed_out: false,
            }),
            What::StepCompensated { step, .. } => Change::Compensated {
                step: step as usize,
            },
            What::Other(ref whole) => return Cow::Borrowed(&whole.1),
        })
    }
}

impl What {
    /// `kind` and `change` as one of the common writes, if they are one: every part of them
    /// follows from what is kept (a step's name is its definition's at that position, not a
    /// fallback's; a completion has no output and none of the flags a fallback or a timeout
    /// sets; a duration fits in 64 bits of nanoseconds).
    fn common(kind: &SagaEventKind, change: &Change, steps: &[&'static str]) -> Option<What> {
        // The position of the step named `name`, if `step` is it.
        let at = |step: usize, name: &str| {
            (steps.get(step) == Some(&name))
                .then(|| u32::try_from(step).ok())
                .flatten()
        };
        let nanos = |duration: &Duration| u64::try_from(duration.as_nanos()).ok();
        Some(match (kind, change) {
            (SagaEventKind::SagaStarted { steps: names }, Change::None)
                if names.iter().map(|n| &**n).eq(steps.iter().copied()) =>
            {
                What::SagaStarted
            }
            (
                SagaEventKind::StepStarted {
                    step: name,
                    phase,
                    attempt,
                },
                Change::AttemptStarted {
                    step,
                    phase: changed_phase,
                    attempt: changed_attempt,
                },
            ) if phase == changed_phase && attempt == changed_attempt => What::StepStarted {
                step: at(*step, name)?,
                attempt: *attempt,
                phase: *phase,
            },
            (
                SagaEventKind::StepCompleted {
                    step: name,
                    attempt,
                    duration,
                    output: None,
                },
                Change::Completed(CompletedStep {
                    step,
                    via_fallback: false,
                    compensated: false,
                    timed_out: false,
                }),
            ) => What::StepCompleted {
                step: at(*step, name)?,
                attempt: *attempt,
                nanos: nanos(duration)?,
            },
            (
                SagaEventKind::StepCompensated {
                    step: name,
                    attempt,
                },
                Change::Compensated { step },
            ) => What::StepCompensated {
                step: at(*step, name)?,
                attempt: *attempt,
            },
            (SagaEventKind::SagaCompleted { duration }, Change::None) => What::SagaCompleted {
                nanos: nanos(duration)?,
            },
            (SagaEventKind::SagaCompensated { duration }, Change::None) => What::SagaCompensated {
                nanos: nanos(duration)?,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests;
