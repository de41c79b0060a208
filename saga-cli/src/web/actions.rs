//! Cancel, resume and retry from the dashboard. `GET /sagas/{id}/{action}` asks for
//! confirmation; `POST` does it through the store's operator requests and shows the result, or
//! the typed reason it was refused.
//!
//! A POST is refused, changing nothing, when the server is read-only, when it comes from another
//! origin (`Origin`, `Sec-Fetch-Site`), when its form lacks this server's anti-forgery token,
//! or when the server has an access token and the form does not carry it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;
use saga_runtime::{SagaError, SagaId};

use super::page::{self, saga_link};
use super::App;
use crate::filter::parse_id;

/// An operator request the dashboard offers.
#[derive(Clone, Copy)]
enum Action {
    Cancel,
    Resume,
    Retry,
}

impl Action {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "cancel" => Some(Action::Cancel),
            "resume" => Some(Action::Resume),
            "retry" => Some(Action::Retry),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Resume => "resume",
            Action::Retry => "retry",
        }
    }

    /// What it does, for the confirmation.
    fn explain(self) -> &'static str {
        match self {
            Action::Cancel => {
                "Its worker stops it at the next step boundary and compensates the completed steps."
            }
            Action::Resume => {
                "A worker with its type goes on from where it stopped. Fix the cause first."
            }
            Action::Retry => {
                "A worker with its type runs the failed compensation, or the step that failed \
                 after the pivot, again."
            }
        }
    }
}

/// The saga id and action of a path, or why there is no such page.
fn target(id: &str, action: &str) -> Result<(SagaId, Action), String> {
    let id = parse_id(id)?;
    let action = Action::parse(action)
        .ok_or_else(|| format!("`{action}` is not an action: cancel, resume or retry"))?;
    Ok((id, action))
}

fn not_found(message: &str) -> Response {
    page::error(StatusCode::NOT_FOUND, "Not found", message)
}

pub async fn confirm(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let (id, action) = match target(&id, &action) {
        Ok(target) => target,
        Err(message) => return not_found(&message),
    };
    if app.engine.is_none() {
        return read_only();
    }
    match app.db.store().load(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(&format!("The store holds no saga with id {id}.")),
        Err(error) => return page::store_error(error),
    }
    let title = format!("{} saga {id}?", capitalized(action.name()));
    let body = html! {
        p { "Saga " (saga_link(id)) ". " (action.explain()) }
        form #confirm method="post" action={ "/sagas/" (id) "/" (action.name()) } {
            input type="hidden" name="csrf" value=(app.csrf);
            @if app.token.is_some() {
                label { "access token " input type="password" name="token" autocomplete="off"; }
                " "
            }
            button type="submit" class={ "button " (action.name()) } { "Yes, " (action.name()) }
            " " a href={ "/sagas/" (id) } { "No, back to the saga" }
        }
    };
    page::shell(&title, false, body).into_response()
}

pub async fn act(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (id, action) = match target(&id, &action) {
        Ok(target) => target,
        Err(message) => return not_found(&message),
    };
    let Some(engine) = &app.engine else {
        return read_only();
    };
    if let Err(reason) = same_origin(&headers) {
        return page::error(StatusCode::FORBIDDEN, "Refused", &reason);
    }
    if !form
        .get("csrf")
        .is_some_and(|given| equal(given, &app.csrf))
    {
        return page::error(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form does not carry this dashboard's anti-forgery token: open the saga's page \
             and use its button.",
        );
    }
    if let Some(token) = &app.token {
        if !form.get("token").is_some_and(|given| equal(given, token)) {
            return page::error(
                StatusCode::UNAUTHORIZED,
                "Refused",
                "Actions need the access token this dashboard was started with.",
            );
        }
    }
    let result = match action {
        Action::Cancel => engine.cancel(id).await,
        Action::Resume => engine.resume(id).await,
        Action::Retry => engine.retry(id).await,
    };
    match result {
        Ok(()) => {
            let body = html! {
                p #result.ok { (done(action)) }
                p { "Back to " (saga_link(id)) "." }
            };
            page::shell(
                &format!("Saga {id}: {} requested", action.name()),
                false,
                body,
            )
            .into_response()
        }
        Err(error) => {
            let status = match &error {
                SagaError::NotFound(_) => StatusCode::NOT_FOUND,
                SagaError::Refused { .. } | SagaError::InvalidState { .. } => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let body = html! {
                p #result.error { (error) }
                p { "Back to " (saga_link(id)) "." }
            };
            (
                status,
                page::shell(&format!("Cannot {} saga {id}", action.name()), false, body),
            )
                .into_response()
        }
    }
}

fn done(action: Action) -> &'static str {
    match action {
        Action::Cancel => {
            "Cancellation requested: its worker stops at the next step boundary and compensates."
        }
        Action::Resume => "Resumed: a worker with its type goes on from where it stopped.",
        Action::Retry => "Reopened for a retry: a worker with its type runs it again.",
    }
}

fn read_only() -> Response {
    page::error(
        StatusCode::FORBIDDEN,
        "Read-only",
        "This dashboard is read-only: start it with --actions to cancel, resume or retry sagas.",
    )
}

/// Refuses a request a page of another site sent: browsers name the sender in `Origin` and
/// `Sec-Fetch-Site`.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.strip_prefix(scheme) == Some(host));
        if !own {
            return Err(format!(
                "A request from another origin ({origin}) cannot act on sagas."
            ));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if site != "same-origin" && site != "none" {
            return Err(format!(
                "A request from another site (Sec-Fetch-Site: {site}) cannot act on sagas."
            ));
        }
    }
    Ok(())
}

/// Compares two secrets in time that depends only on their lengths.
fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_origins_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(
            same_origin(&headers).is_ok(),
            "a form without Origin (old browsers, curl)"
        );
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers).is_ok());
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(same_origin(&headers).is_err());
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(same_origin(&headers).is_err());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(equal("abc", "abc"));
        assert!(!equal("abc", "abd"));
        assert!(!equal("abc", "ab"));
    }
}
