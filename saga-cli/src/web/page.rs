//! The frame every page shares, and the pieces several pages use.

use std::time::SystemTime;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::text;

/// A whole page: title, navigation, and the body. `live` pages refresh their `main` every
/// couple of seconds (assets/live.js).
pub fn shell(title: &str, live: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sagas" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/live.js" defer {}
            }
            body {
                nav {
                    a.brand href="/" { "sagas" }
                    a href="/" { "Overview" }
                    a href="/sagas" { "All sagas" }
                }
                main data-live=[live.then_some("2000")] {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page saying what went wrong, with its status code.
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    let body = shell(
        title,
        false,
        html! {
            p.error { (message) }
            p { a href="/" { "Back to the overview" } }
        },
    );
    (status, body).into_response()
}

/// A status name as a coloured badge.
pub fn status(name: &str) -> Markup {
    html! { span class={ "status " (name) } { (name.replace('_', " ")) } }
}

/// A time as "3m ago", with the exact time in milliseconds since the epoch as its title.
pub fn when(at: SystemTime) -> Markup {
    html! { time title=(text::millis(at)) { (text::ago(at)) } }
}

/// A link to a saga's page.
pub fn saga_link(id: impl std::fmt::Display) -> Markup {
    let id = id.to_string();
    html! { a.id href={ "/sagas/" (id) } { code { (id) } } }
}

/// A store error, as a 500 page.
pub fn store_error(cause: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The store could not be read",
        &cause.to_string(),
    )
}
