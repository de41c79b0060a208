//! `/sagas/{id}`: one saga. Its status, context (pretty, escaped), lease holder and fencing
//! token, pending wake time; its diagram with the path taken, the current step, the steps still
//! ahead and the rollback a failure now would take; its timeline, the rollback apart.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use saga_runtime::store::{Requested, SagaRecord};
use saga_runtime::{NodeState, OperatorRequest, Rollback, SagaShape, SagaStatus};

use super::page::{self, when};
use super::App;
use crate::filter::parse_id;
use crate::graph::{shape_of, unrecorded_hint};
use crate::timeline;

pub async fn page(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(reason) => return page::error(StatusCode::NOT_FOUND, "No such saga", &reason),
    };
    let store = app.db.store();
    let record = match store.load(id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return page::error(
                StatusCode::NOT_FOUND,
                "No such saga",
                &format!("The store holds no saga with id {id}."),
            )
        }
        Err(error) => return page::store_error(error),
    };
    let history = match store.history(id, 0, usize::MAX).await {
        Ok(history) => history.unwrap_or_default(),
        Err(error) => return page::store_error(error),
    };
    let types = match store.saga_types().await {
        Ok(types) => types,
        Err(error) => return page::store_error(error),
    };
    let shape = shape_of(&types, &record);
    let body = html! {
        (facts(&record))
        @if app.engine.is_some() { (actions(&record)) }
        section #diagram {
            h2 { "Path" }
            @match shape {
                Some(shape) => (diagram(shape, &record, &history)),
                None => p.empty { "Its type's shape is not recorded in this store (" (unrecorded_hint()) "); its steps are " (record.steps.join(", ")) "." },
            }
        }
        section #context {
            h2 { "Context" }
            pre { code { (context(&record)) } }
        }
        section #timeline {
            h2 { "Timeline" }
            ol.timeline {
                @for entry in timeline::entries(&history) {
                    li class={ (entry.tone.name()) @if entry.rollback { " rollback" } } {
                        span.offset { (entry.offset) }
                        span.what { (entry.text) }
                    }
                }
            }
        }
    };
    let title = format!("{} {}", record.saga_type, id);
    page::shell(&title, !record.state.status.is_terminal(), body).into_response()
}

/// Status, key, times, lease, wake time, pending cancellation.
fn facts(record: &SagaRecord) -> Markup {
    let status = &record.state.status;
    let wake = record.state.wake_at().filter(|at| *at > SystemTime::now());
    html! {
        dl #facts {
            dt { "status" } dd #status { (page::status(status.name())) @match status {
                SagaStatus::Running { step } => { " at " b { (step_name(record, *step)) } },
                SagaStatus::Compensating { step } => { " undoing " b { (step_name(record, *step)) } },
                SagaStatus::CompensationFailed { step } | SagaStatus::Failed { step } => { " at " b { (step_name(record, *step)) } },
                SagaStatus::Parked { reason } => { ": " (reason) },
                _ => {},
            } }
            @if let Some(key) = &record.idempotency_key {
                dt { "idempotency key" } dd #key { code { (key) } }
            }
            dt { "created" } dd { (when(record.created_at)) }
            dt { "updated" } dd { (when(record.updated_at)) }
            dt { "held by" } dd #lease {
                @match &record.lease {
                    Some(lease) => { code { (&*lease.owner) } ", fencing token " b #token { (lease.token) } ", lease expires " (when(lease.expires_at)) },
                    None if status.is_terminal() => { "nobody (it has ended)" },
                    None => { "no worker" },
                }
            }
            @if let Some(at) = wake {
                dt { "waits until" } dd #wake { (when(at)) }
            }
            @if record.cancel_requested && !status.is_terminal() {
                dt { "cancellation" } dd.warn { "requested" }
            }
        }
    }
}

/// Links to the confirmation of each request the saga's state admits, as the store will judge
/// it (a cancel past the pivot or in the last step, say, is not offered).
fn actions(record: &SagaRecord) -> Markup {
    let saga = Requested {
        id: record.id,
        saga_type: &record.saga_type,
        steps: record.steps.len(),
        at: SystemTime::now(),
    };
    let allowed: Vec<&str> = [
        (OperatorRequest::Cancel, "cancel"),
        (OperatorRequest::Resume, "resume"),
        (OperatorRequest::Retry, "retry"),
    ]
    .into_iter()
    .filter(|(request, _)| record.state.admit(*request, saga).is_ok())
    .map(|(_, name)| name)
    .collect();
    html! {
        @if !allowed.is_empty() {
            p #actions {
                @for action in allowed {
                    a class={ "button " (action) } href={ "/sagas/" (record.id) "/" (action) } { (action) }
                    " "
                }
            }
        }
    }
}

fn step_name(record: &SagaRecord, step: usize) -> &str {
    record.steps.get(step).map_or("?", String::as_str)
}

/// The context as pretty JSON, or why it cannot be shown.
fn context(record: &SagaRecord) -> String {
    record
        .context
        .to_json()
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| "(the context is not readable JSON)".to_owned())
}

/// The forward path as a row of steps (each with its fallback), the compensations under the
/// steps that have one, each coloured by what became of it; then what a failure now would do.
fn diagram(shape: &SagaShape, record: &SagaRecord, history: &[saga_runtime::SagaEvent]) -> Markup {
    let progress = shape.progress(history);
    let status = &record.state.status;
    // The node under way: a step's action, or its compensation.
    let (current, undoing) = match status {
        SagaStatus::Running { step } => (Some(*step), None),
        SagaStatus::Compensating { step } => (None, Some(*step)),
        _ => (None, None),
    };
    let ahead = Ahead::of(shape, status);
    let pivot = shape.pivot();
    let compensable = shape.compensable();
    html! {
        ol.path {
            @for (i, step) in shape.steps.iter().enumerate() {
                @let state = progress.step(i);
                li.step data-step=(step.name) {
                    div class={ "node " (state.name()) @if current == Some(i) { " current" } }
                        data-state=(state.name()) aria-current=[(current == Some(i)).then_some("step")] {
                        span.name { (step.name) }
                        @for input in &step.inputs { span.flow { "← " (input) } }
                        @if let Some(output) = &step.output { span.flow { "→ " (output) } }
                        @if pivot == Some(i) { span.tag { "pivot" } }
                        span.state { (state.name()) }
                    }
                    @if let Some(fallback) = &step.fallback {
                        @let state = progress.fallback(i);
                        div class={ "node fallback " (state.map_or("ahead", NodeState::name)) } {
                            span.tag { "fallback" } span.name { (fallback) }
                        }
                    }
                    @if let Some(compensation) = step.compensation.as_ref().filter(|_| compensable.contains(&i)) {
                        @let state = progress.compensation(i);
                        div class={ "node undo " (state.map_or("ahead", NodeState::name))
                                @if undoing == Some(i) { " current" }
                                @if ahead.undo().contains(&i) && undoing != Some(i) { " would-undo" } }
                            data-state=(state.map_or("not run", NodeState::name)) {
                            span.tag { "undo" } span.name { (compensation) }
                        }
                    }
                }
            }
        }
        p #if-failed { (if_failed(shape, &ahead, record)) }
    }
}

/// What is still ahead of a saga's rollback.
enum Ahead {
    /// It runs this step: what a failure of it would lead to.
    IfFails(usize, Rollback),
    /// It is rolling back: these compensations are left, in this order.
    RollingBack(Vec<usize>),
    /// It has ended.
    Ended,
}

impl Ahead {
    fn of(shape: &SagaShape, status: &SagaStatus<usize>) -> Self {
        match status {
            SagaStatus::Running { step } => Ahead::IfFails(*step, shape.rollback_from(*step)),
            SagaStatus::Pending => Ahead::IfFails(0, shape.rollback_from(0)),
            SagaStatus::Compensating { step } => Ahead::RollingBack(
                shape
                    .compensable()
                    .into_iter()
                    .rev()
                    .filter(|&j| j <= *step)
                    .collect(),
            ),
            _ => Ahead::Ended,
        }
    }

    /// The steps whose compensations would run, or are left to run.
    fn undo(&self) -> &[usize] {
        match self {
            Ahead::IfFails(_, Rollback::Compensate(undo)) | Ahead::RollingBack(undo) => undo,
            _ => &[],
        }
    }
}

/// What a failure now would take, for a saga still under way.
fn if_failed(shape: &SagaShape, ahead: &Ahead, record: &SagaRecord) -> Markup {
    let names = |steps: &[usize]| {
        steps
            .iter()
            .filter_map(|&j| shape.steps.get(j)?.compensation.clone())
            .collect::<Vec<_>>()
            .join(" → ")
    };
    match ahead {
        Ahead::IfFails(step, rollback) => {
            let name = step_name(record, *step);
            match rollback {
                Rollback::Compensate(undo) if undo.is_empty() => {
                    html! { "If " b { (name) } " failed now: nothing before it needs undoing; the saga would end compensated." }
                }
                Rollback::Compensate(undo) => {
                    html! { "If " b { (name) } " failed now, the rollback would run " b.undo-path { (names(undo)) } ", then end compensated." }
                }
                _ => {
                    html! { "If " b { (name) } " failed now: it is past the pivot, so nothing would be undone and the saga would end failed, needing attention." }
                }
            }
        }
        Ahead::RollingBack(left) => {
            html! { "Rolling back: " b.undo-path { (names(left)) } " left to run, in this order." }
        }
        Ahead::Ended => html! { "It has ended: no failure can change it now." },
    }
}
