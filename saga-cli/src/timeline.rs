//! A saga's history as a timeline, in words: one entry per event, its time from the start, its
//! tone, and whether it belongs to the rollback. `saga show` paints it for a terminal and the
//! dashboard renders it as HTML.

use saga_runtime::{Phase, SagaEvent, SagaEventKind};

use crate::text;

/// How an entry reads: what colour a terminal or a page gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Bad,
    Warn,
    Undo,
    Dim,
}

impl Tone {
    /// Its name, for CSS classes.
    pub fn name(self) -> &'static str {
        match self {
            Tone::Plain => "plain",
            Tone::Good => "good",
            Tone::Bad => "bad",
            Tone::Warn => "warn",
            Tone::Undo => "undo",
            Tone::Dim => "dim",
        }
    }
}

/// One event of a timeline.
pub struct Entry {
    /// The time since the first event, as people read it.
    pub offset: String,
    /// What happened.
    pub text: String,
    pub tone: Tone,
    /// Part of the rollback, shown apart from the forward path.
    pub rollback: bool,
}

/// The entries of a history, in order.
pub fn entries(history: &[SagaEvent]) -> Vec<Entry> {
    let Some(first) = history.first() else {
        return Vec::new();
    };
    let mut rolling_back = false;
    history
        .iter()
        .map(|event| {
            let offset = event
                .at
                .duration_since(first.at)
                .map(text::duration)
                .unwrap_or_default();
            match &event.kind {
                SagaEventKind::CompensationStarted { .. } => rolling_back = true,
                SagaEventKind::SagaReopened { .. } => rolling_back = false,
                _ => {}
            }
            let (tone, text) = describe(&event.kind);
            let rollback =
                rolling_back && !matches!(event.kind, SagaEventKind::CompensationStarted { .. });
            Entry {
                offset,
                text,
                tone,
                rollback,
            }
        })
        .collect()
}

/// What one event says.
fn describe(kind: &SagaEventKind) -> (Tone, String) {
    match kind {
        SagaEventKind::SagaStarted { .. } => (Tone::Plain, "started".to_owned()),
        SagaEventKind::StepStarted {
            step,
            phase: Phase::Compensation,
            attempt,
        } => (Tone::Undo, format!("undo {step}: attempt {attempt}")),
        SagaEventKind::StepStarted { step, attempt, .. } => {
            (Tone::Plain, format!("{step}: attempt {attempt}"))
        }
        SagaEventKind::StepCompleted {
            step,
            attempt,
            duration,
            output,
        } => (
            Tone::Good,
            format!(
                "{step}: completed (attempt {attempt}, {}){}",
                text::duration(*duration),
                output
                    .as_ref()
                    .map(|output| format!(" -> {}", brief(output.json())))
                    .unwrap_or_default()
            ),
        ),
        SagaEventKind::RetryScheduled {
            step,
            attempt,
            delay,
            error,
            ..
        } => (
            Tone::Warn,
            format!(
                "{step}: attempt {attempt} failed: {error}; retry in {}",
                text::duration(*delay)
            ),
        ),
        SagaEventKind::StepFailed {
            step,
            attempt,
            error,
        } => (
            Tone::Bad,
            format!("{step}: failed (attempt {attempt}): {error}"),
        ),
        SagaEventKind::FallbackStarted { step, fallback } => {
            (Tone::Plain, format!("{step}: falls back to {fallback}"))
        }
        SagaEventKind::CompensationStarted { reason } => {
            (Tone::Undo, format!("rollback: {reason}"))
        }
        SagaEventKind::StepCompensated { step, attempt } => {
            (Tone::Undo, format!("undo {step}: done (attempt {attempt})"))
        }
        SagaEventKind::CompensationFailed {
            step,
            attempt,
            error,
        } => (
            Tone::Bad,
            format!("undo {step}: failed (attempt {attempt}): {error}"),
        ),
        SagaEventKind::SagaResumed { recovery_attempt } => (
            Tone::Dim,
            format!("resumed by a worker (takeover {recovery_attempt} in a row)"),
        ),
        SagaEventKind::SagaParked { reason } => (Tone::Bad, format!("parked: {reason}")),
        SagaEventKind::SagaReopened { request } => {
            (Tone::Plain, format!("reopened by an operator: {request}"))
        }
        SagaEventKind::SagaCompleted { duration } => (
            Tone::Good,
            format!("completed in {}", text::duration(*duration)),
        ),
        SagaEventKind::SagaCompensated { duration } => (
            Tone::Undo,
            format!("compensated in {}", text::duration(*duration)),
        ),
        SagaEventKind::SagaFailed { step, error, .. } => {
            (Tone::Bad, format!("failed at {step}: {error}"))
        }
        other => (Tone::Plain, format!("{other:?}")),
    }
}

/// A step's output as one line of JSON, cut at 120 characters.
fn brief(output: &serde_json::Value) -> String {
    let text = output.to_string();
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}
