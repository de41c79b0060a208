//! Hand-written JSON for what every durable write encodes: its history entries, the saga's state
//! and its status.
//!
//! The output is byte for byte what `serde_json` writes for the same values (the tests compare
//! the two for every event kind and every field of a state), so that what is stored reads back
//! with the same derives and older data stays readable. serde_json's derived serializers spent
//! most of a write's encoding escaping the field names one character at a time; here the names
//! are literals, and the rare nested values (errors, rollback causes, outputs) still go through
//! serde_json, whose compact output does not depend on where a value sits.
//!
//! Every struct is destructured whole: a field added to one of them does not compile until it is
//! written here too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::event::SagaEventKind;
use crate::machine::{Activity, CompensationFailed, CompletedStep, SagaState};
use crate::step::Phase;
use crate::SagaStatus;

/// What a value that serde_json refused left behind: the error (the buffer's tail is then
/// unspecified; callers drop it).
pub(crate) type Result = std::result::Result<(), serde_json::Error>;

/// A nested value, through serde_json.
fn serde(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) -> Result {
    serde_json::to_writer(out, value)
}

/// A string, quoted, escaped as serde_json escapes it (only quotes, backslashes and control
/// characters are: step names and reasons seldom have any).
pub(crate) fn string(out: &mut Vec<u8>, s: &str) -> Result {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return serde(out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
    Ok(())
}

/// An integer, as serde_json writes it.
pub(crate) fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Literal JSON: keys with their punctuation, tags, `true`.
fn raw(out: &mut Vec<u8>, json: &str) {
    out.extend_from_slice(json.as_bytes());
}

/// Serde's form of a `Duration`.
fn duration(out: &mut Vec<u8>, d: Duration) {
    raw(out, "{\"secs\":");
    number(out, d.as_secs());
    raw(out, ",\"nanos\":");
    number(out, d.subsec_nanos());
    out.push(b'}');
}

/// Serde's form of a `SystemTime`; `None` (nothing written) before 1970, which serde refuses.
pub(crate) fn system_time(out: &mut Vec<u8>, at: SystemTime) -> Option<()> {
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    raw(out, "{\"secs_since_epoch\":");
    number(out, since.as_secs());
    raw(out, ",\"nanos_since_epoch\":");
    number(out, since.subsec_nanos());
    out.push(b'}');
    Some(())
}

fn phase(out: &mut Vec<u8>, phase: Phase) {
    raw(
        out,
        match phase {
            Phase::Action => "\"action\"",
            Phase::Compensation => "\"compensation\"",
        },
    );
}

/// A step name, as events carry it, with its key.
fn step_name(out: &mut Vec<u8>, name: &str) -> Result {
    raw(out, ",\"step\":");
    string(out, name)
}

fn attempt(out: &mut Vec<u8>, attempt: u32) {
    raw(out, ",\"attempt\":");
    number(out, attempt);
}

/// A list of strings (a saga's step names).
pub(crate) fn strings<'a>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'a str>) -> Result {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, item)?;
    }
    out.push(b']');
    Ok(())
}

/// An event's kind, as `SagaEventKind`'s derive writes it.
pub(crate) fn event_kind(out: &mut Vec<u8>, kind: &SagaEventKind) -> Result {
    use SagaEventKind as K;
    let tag = |out: &mut Vec<u8>, tag: &str| {
        raw(out, "{\"event\":\"");
        raw(out, tag);
        out.push(b'"');
    };
    match kind {
        K::SagaStarted { steps } => {
            tag(out, "saga_started");
            raw(out, ",\"steps\":");
            strings(out, steps.iter().map(|s| &**s))?;
        }
        K::StepStarted {
            step,
            phase: p,
            attempt: a,
        } => {
            tag(out, "step_started");
            step_name(out, step)?;
            raw(out, ",\"phase\":");
            phase(out, *p);
            attempt(out, *a);
        }
        K::RetryScheduled {
            step,
            phase: p,
            attempt: a,
            delay,
            error,
        } => {
            tag(out, "retry_scheduled");
            step_name(out, step)?;
            raw(out, ",\"phase\":");
            phase(out, *p);
            attempt(out, *a);
            raw(out, ",\"delay\":");
            duration(out, *delay);
            raw(out, ",\"error\":");
            serde(out, error)?;
        }
        K::StepCompleted {
            step,
            attempt: a,
            duration: d,
            output,
        } => {
            tag(out, "step_completed");
            step_name(out, step)?;
            attempt(out, *a);
            raw(out, ",\"duration\":");
            duration(out, *d);
            if let Some(output) = output {
                raw(out, ",\"output\":");
                serde(out, output)?;
            }
        }
        K::StepFailed {
            step,
            attempt: a,
            error,
        } => {
            tag(out, "step_failed");
            step_name(out, step)?;
            attempt(out, *a);
            raw(out, ",\"error\":");
            serde(out, error)?;
        }
        K::FallbackStarted { step, fallback } => {
            tag(out, "fallback_started");
            step_name(out, step)?;
            raw(out, ",\"fallback\":");
            string(out, fallback)?;
        }
        K::CompensationStarted { reason } => {
            tag(out, "compensation_started");
            raw(out, ",\"reason\":");
            serde(out, reason)?;
        }
        K::StepCompensated { step, attempt: a } => {
            tag(out, "step_compensated");
            step_name(out, step)?;
            attempt(out, *a);
        }
        K::CompensationFailed {
            step,
            attempt: a,
            error,
        } => {
            tag(out, "compensation_failed");
            step_name(out, step)?;
            attempt(out, *a);
            raw(out, ",\"error\":");
            serde(out, error)?;
        }
        K::SagaResumed { recovery_attempt } => {
            tag(out, "saga_resumed");
            raw(out, ",\"recovery_attempt\":");
            number(out, *recovery_attempt);
        }
        K::StopIgnored { cancelled, reason } => {
            tag(out, "stop_ignored");
            raw(out, ",\"cancelled\":");
            boolean(out, *cancelled);
            raw(out, ",\"reason\":");
            string(out, reason)?;
        }
        K::SagaParked { reason } => {
            tag(out, "saga_parked");
            raw(out, ",\"reason\":");
            string(out, reason)?;
        }
        K::SagaReopened { request } => {
            tag(out, "saga_reopened");
            raw(out, ",\"request\":");
            serde(out, request)?;
        }
        K::SagaCompleted { duration: d } => {
            tag(out, "saga_completed");
            raw(out, ",\"duration\":");
            duration(out, *d);
        }
        K::SagaCompensated { duration: d } => {
            tag(out, "saga_compensated");
            raw(out, ",\"duration\":");
            duration(out, *d);
        }
        K::SagaFailed {
            step,
            error,
            compensation,
        } => {
            tag(out, "saga_failed");
            step_name(out, step)?;
            raw(out, ",\"error\":");
            serde(out, error)?;
            raw(out, ",\"compensation\":");
            boolean(out, *compensation);
        }
    }
    out.push(b'}');
    Ok(())
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    raw(out, if b { "true" } else { "false" });
}

/// A status, as `SagaStatus`'s derive writes it.
pub(crate) fn status(out: &mut Vec<u8>, status: &SagaStatus<usize>) -> Result {
    let (tag, step) = match status {
        SagaStatus::Pending => ("pending", None),
        SagaStatus::Running { step } => ("running", Some(*step)),
        SagaStatus::Compensating { step } => ("compensating", Some(*step)),
        SagaStatus::Completed => ("completed", None),
        SagaStatus::Compensated => ("compensated", None),
        SagaStatus::CompensationFailed { step } => ("compensation_failed", Some(*step)),
        SagaStatus::Failed { step } => ("failed", Some(*step)),
        SagaStatus::Parked { reason } => {
            raw(out, "{\"status\":\"parked\",\"reason\":");
            string(out, reason)?;
            out.push(b'}');
            return Ok(());
        }
    };
    raw(out, "{\"status\":\"");
    raw(out, tag);
    out.push(b'"');
    if let Some(step) = step {
        raw(out, ",\"step\":");
        number(out, step);
    }
    out.push(b'}');
    Ok(())
}

/// Milliseconds since 1970, as the state's times are kept.
fn millis(out: &mut Vec<u8>, at: SystemTime) {
    number(out, crate::machine::to_millis(at));
}

/// A saga's state, as `SagaState`'s derive writes it.
pub(crate) fn state(out: &mut Vec<u8>, state: &SagaState) -> Result {
    let SagaState {
        status: current,
        completed,
        rollback,
        active,
        failure,
        compensation_failures,
        deadline,
        recovery_attempts,
        cancel_ignored,
        deadline_ignored,
        pivot,
        parked_from,
        outputs,
        groups,
    } = state;
    raw(out, "{\"status\":");
    status(out, current)?;
    if !completed.is_empty() {
        raw(out, ",\"completed\":");
        list(out, completed, completed_step)?;
    }
    if let Some(rollback) = rollback {
        raw(out, ",\"rollback\":");
        serde(out, rollback)?;
    }
    if !active.is_empty() {
        raw(out, ",\"active\":");
        list(out, active, activity)?;
    }
    if let Some(failure) = failure {
        raw(out, ",\"failure\":");
        serde(out, failure)?;
    }
    if !compensation_failures.is_empty() {
        raw(out, ",\"compensation_failures\":");
        list(
            out,
            compensation_failures,
            |out, CompensationFailed { step, error }| {
                raw(out, "{\"step\":");
                number(out, *step);
                raw(out, ",\"error\":");
                serde(out, error)?;
                out.push(b'}');
                Ok(())
            },
        )?;
    }
    if let Some(deadline) = deadline {
        raw(out, ",\"deadline\":");
        millis(out, *deadline);
    }
    if *recovery_attempts != 0 {
        raw(out, ",\"recovery_attempts\":");
        number(out, *recovery_attempts);
    }
    if *cancel_ignored {
        raw(out, ",\"cancel_ignored\":true");
    }
    if *deadline_ignored {
        raw(out, ",\"deadline_ignored\":true");
    }
    if let Some(pivot) = pivot {
        raw(out, ",\"pivot\":");
        number(out, *pivot);
    }
    if let Some(parked_from) = parked_from {
        raw(out, ",\"parked_from\":");
        status(out, parked_from)?;
    }
    if !outputs.is_empty() {
        raw(out, ",\"outputs\":");
        serde(out, outputs)?;
    }
    if !groups.is_empty() {
        raw(out, ",\"groups\":");
        serde(out, groups)?;
    }
    out.push(b'}');
    Ok(())
}

/// A JSON array of `items`, each written by `item`.
fn list<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut item: impl FnMut(&mut Vec<u8>, &T) -> Result,
) -> Result {
    out.push(b'[');
    for (i, each) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, each)?;
    }
    out.push(b']');
    Ok(())
}

fn completed_step(out: &mut Vec<u8>, step: &CompletedStep) -> Result {
    let CompletedStep {
        step,
        via_fallback,
        compensated,
        timed_out,
    } = step;
    raw(out, "{\"step\":");
    number(out, *step);
    if *via_fallback {
        raw(out, ",\"via_fallback\":true");
    }
    if *compensated {
        raw(out, ",\"compensated\":true");
    }
    if *timed_out {
        raw(out, ",\"timed_out\":true");
    }
    out.push(b'}');
    Ok(())
}

fn activity(out: &mut Vec<u8>, activity: &Activity) -> Result {
    let Activity {
        step,
        phase: p,
        fallback,
        attempt,
        in_flight,
        started,
        retry_at,
        last_error,
    } = activity;
    raw(out, "{\"step\":");
    number(out, *step);
    raw(out, ",\"phase\":");
    phase(out, *p);
    if *fallback {
        raw(out, ",\"fallback\":true");
    }
    raw(out, ",\"attempt\":");
    number(out, *attempt);
    if *in_flight {
        raw(out, ",\"in_flight\":true");
    }
    if let Some(started) = started {
        raw(out, ",\"started\":");
        millis(out, *started);
    }
    if let Some(retry_at) = retry_at {
        raw(out, ",\"retry_at\":");
        millis(out, *retry_at);
    }
    if let Some(error) = last_error {
        raw(out, ",\"last_error\":");
        serde(out, error)?;
    }
    out.push(b'}');
    Ok(())
}

/// A state, as its row keeps it.
pub(crate) fn state_string(value: &SagaState) -> std::result::Result<String, serde_json::Error> {
    // Room for a typical state: a buffer that grows is copied each time.
    to_string(value, 512, state)
}

/// A status, as its row keeps it.
pub(crate) fn status_string(
    value: &SagaStatus<usize>,
) -> std::result::Result<String, serde_json::Error> {
    to_string(value, 48, status)
}

/// A saga's step names, as its row keeps them.
pub(crate) fn steps_string(steps: &[&str]) -> std::result::Result<String, serde_json::Error> {
    to_string(steps, 16 * steps.len() + 2, |out, steps| {
        strings(out, steps.iter().copied())
    })
}

/// Writes `value` with `write` into a fresh `String` of `room` bytes to start with.
fn to_string<T: ?Sized>(
    value: &T,
    room: usize,
    write: impl FnOnce(&mut Vec<u8>, &T) -> Result,
) -> std::result::Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(room);
    write(&mut out, value)?;
    // Every piece is UTF-8 (literals, numbers, strings copied whole or written by serde_json),
    // so the conversion never replaces anything.
    Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()))
}

#[cfg(test)]
pub(super) mod tests;
