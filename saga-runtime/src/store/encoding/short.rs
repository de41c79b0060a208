//! The short form of a history entry (SQLite, since schema version 8): a JSON array of the
//! entry's time in nanoseconds since 1970, a code for its kind, then that kind's fields in
//! order, for the kinds nearly every history is made of.
//!
//! | code | kind               | fields                                          |
//! |------|--------------------|-------------------------------------------------|
//! | 0    | `saga_started`     | the step names (an array)                       |
//! | 1    | `step_started`     | step, phase (0 action, 1 compensation), attempt |
//! | 2    | `step_completed`   | step, attempt, duration in nanoseconds          |
//! | 3    | `step_compensated` | step, attempt                                   |
//! | 4    | `saga_completed`   | duration in nanoseconds                         |
//! | 5    | `saga_compensated` | duration in nanoseconds                         |
//!
//! `[1796491428021962583,2,"step_a",1,340]` is 38 bytes where the object form
//! (`{"at":..,"kind":{"event":"step_completed",..}}`) is 114. A saga's row is mostly its
//! history, and a commit writes out every page holding a row it changed: a row a third the size
//! is a third of the pages when many sagas run at once. Any other kind, a step that returned an
//! output, a duration past 64 bits of nanoseconds keeps the object form; a reader tells them
//! apart by the first character.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::Error as _;
use serde_json::Value;

use super::json::{self, number};
use crate::event::{SagaEventKind, StepName};
use crate::step::Phase;

/// Appends `kind`, which happened `at` nanoseconds after 1970, in the short form; `Ok(false)`
/// (nothing written) for a kind that has none.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    at: u64,
    kind: &SagaEventKind,
) -> Result<bool, serde_json::Error> {
    let nanos = |d: &Duration| u64::try_from(d.as_nanos()).ok();
    let start = |out: &mut Vec<u8>, code: u8| {
        out.push(b'[');
        number(out, at);
        out.push(b',');
        number(out, code);
    };
    match kind {
        SagaEventKind::SagaStarted { steps } => {
            start(out, 0);
            out.push(b',');
            json::strings(out, steps.iter().map(|s| &**s))?;
        }
        SagaEventKind::StepStarted {
            step,
            phase,
            attempt,
        } => {
            start(out, 1);
            name(out, step)?;
            out.push(b',');
            number(
                out,
                match phase {
                    Phase::Action => 0u8,
                    Phase::Compensation => 1,
                },
            );
            out.push(b',');
            number(out, *attempt);
        }
        SagaEventKind::StepCompleted {
            step,
            attempt,
            duration,
            output: None,
        } => {
            let Some(duration) = nanos(duration) else {
                return Ok(false);
            };
            start(out, 2);
            name(out, step)?;
            out.push(b',');
            number(out, *attempt);
            out.push(b',');
            number(out, duration);
        }
        SagaEventKind::StepCompensated { step, attempt } => {
            start(out, 3);
            name(out, step)?;
            out.push(b',');
            number(out, *attempt);
        }
        SagaEventKind::SagaCompleted { duration } | SagaEventKind::SagaCompensated { duration } => {
            let Some(duration) = nanos(duration) else {
                return Ok(false);
            };
            let code = match kind {
                SagaEventKind::SagaCompleted { .. } => 4,
                _ => 5,
            };
            start(out, code);
            out.push(b',');
            number(out, duration);
        }
        _ => return Ok(false),
    }
    out.push(b']');
    Ok(true)
}

/// `,"name"`.
fn name(out: &mut Vec<u8>, step: &str) -> Result<(), serde_json::Error> {
    out.push(b',');
    json::string(out, step)
}

/// Reads an entry of the short form back: when it happened, and what.
pub(crate) fn decode(text: &str) -> serde_json::Result<(SystemTime, SagaEventKind)> {
    let items: Vec<Value> = serde_json::from_str(text)?;
    let bad = || serde_json::Error::custom(format!("not a history entry: {text}"));
    let int = |i: usize| items.get(i).and_then(Value::as_u64).ok_or_else(bad);
    let attempt = |i: usize| int(i).and_then(|n| u32::try_from(n).map_err(|_| bad()));
    let step = |i: usize| -> serde_json::Result<StepName> {
        let name = items.get(i).and_then(Value::as_str).ok_or_else(bad)?;
        Ok(name.to_owned().into())
    };
    let arity = |n: usize| match items.len() == n {
        true => Ok(()),
        false => Err(bad()),
    };
    let at = UNIX_EPOCH + Duration::from_nanos(int(0)?);
    let kind = match int(1)? {
        0 => {
            arity(3)?;
            let steps = items[2].as_array().ok_or_else(bad)?;
            let steps = steps
                .iter()
                .map(|s| s.as_str().map(|s| StepName::from(s.to_owned())))
                .collect::<Option<_>>()
                .ok_or_else(bad)?;
            SagaEventKind::SagaStarted { steps }
        }
        1 => {
            arity(5)?;
            let phase = match int(3)? {
                0 => Phase::Action,
                1 => Phase::Compensation,
                _ => return Err(bad()),
            };
            SagaEventKind::StepStarted {
                step: step(2)?,
                phase,
                attempt: attempt(4)?,
            }
        }
        2 => {
            arity(5)?;
            SagaEventKind::StepCompleted {
                step: step(2)?,
                attempt: attempt(3)?,
                duration: Duration::from_nanos(int(4)?),
                output: None,
            }
        }
        3 => {
            arity(4)?;
            SagaEventKind::StepCompensated {
                step: step(2)?,
                attempt: attempt(3)?,
            }
        }
        4 => {
            arity(3)?;
            SagaEventKind::SagaCompleted {
                duration: Duration::from_nanos(int(2)?),
            }
        }
        5 => {
            arity(3)?;
            SagaEventKind::SagaCompensated {
                duration: Duration::from_nanos(int(2)?),
            }
        }
        _ => return Err(bad()),
    };
    Ok((at, kind))
}
