//! `/sagas`: every saga matching the filters in the query string (status, type, idempotency key,
//! created within a time range), oldest first, a page at a time. A malformed filter is a 400
//! page naming it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::page::{self, saga_link, when};
use super::App;
use crate::filter::{parse_age, parse_id, Filter, STATUSES};
use crate::text;

/// Rows per page.
const PAGE: usize = 50;

/// The parameters the list understands.
const PARAMS: [&str; 8] = [
    "status", "type", "key", "since", "until", "waiting", "after", "limit",
];

pub async fn page(
    State(app): State<Arc<App>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let filter = match filter(&params) {
        Ok(filter) => filter,
        Err(reason) => return page::error(StatusCode::BAD_REQUEST, "Bad filter", &reason),
    };
    let query = match filter.query() {
        Ok(query) => query,
        Err(reason) => return page::error(StatusCode::BAD_REQUEST, "Bad filter", &reason),
    };
    let sagas = match app.db.store().list(query).await {
        Ok(sagas) => sagas,
        Err(error) => return page::store_error(error),
    };
    // The filters as given, for the form and the next page's link.
    let given = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let next = (sagas.len() == filter.limit)
        .then(|| {
            sagas
                .last()
                .map(|last| next_page(&params, &last.id.to_string()))
        })
        .flatten();
    let body = html! {
        form #filters method="get" action="/sagas" {
            label { "status "
                select name="status" {
                    option value="" { "any" }
                    @for status in STATUSES {
                        option value=(status) selected[given("status") == status] { (status.replace('_', " ")) }
                    }
                }
            }
            label { "type " input name="type" value=(given("type")) size="14"; }
            label { "idempotency key " input name="key" value=(given("key")) size="14"; }
            label { "created within " input name="since" value=(given("since")) placeholder="2h" size="5"; }
            label { "and longer ago than " input name="until" value=(given("until")) placeholder="10m" size="5"; }
            label { input type="checkbox" name="waiting" value="1" checked[!given("waiting").is_empty() && given("waiting") != "0"]; " waiting on a timer" }
            button type="submit" { "Filter" }
            " " a href="/sagas" { "clear" }
        }
        @if sagas.is_empty() {
            p.empty { "No saga matches." }
        } @else {
            table #sagas {
                thead { tr {
                    th { "saga" } th { "type" } th { "status" } th { "idempotency key" }
                    th { "held by" } th { "created" } th { "updated" }
                } }
                tbody {
                    @for s in &sagas {
                        tr data-id=(s.id) {
                            td { (saga_link(s.id)) }
                            td { (s.saga_type) }
                            td { (page::status(s.status.name())) }
                            td { (s.idempotency_key.as_deref().unwrap_or("")) }
                            td { (s.owner.as_deref().unwrap_or("")) }
                            td { (when(s.created_at)) }
                            td { (text::ago(s.updated_at)) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a #next rel="next" href=(next) { "Next page →" } }
        }
    };
    page::shell("Sagas", false, body).into_response()
}

/// The filters of a query string; empty fields (as a form submits them) are absent.
fn filter(params: &HashMap<String, String>) -> Result<Filter, String> {
    if let Some(unknown) = params.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(format!(
            "unknown filter `{unknown}`: the list takes {}",
            PARAMS.join(", ")
        ));
    }
    let get = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let limit = match get("limit") {
        None => PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n @ 1..=1000) => n,
            _ => return Err(format!("`{text}` is not a page size from 1 to 1000")),
        },
    };
    Ok(Filter {
        status: get("status").map(str::to_owned),
        saga_type: get("type").map(str::to_owned),
        key: get("key").map(str::to_owned),
        since: get("since").map(parse_age).transpose()?,
        until: get("until").map(parse_age).transpose()?,
        waiting: match get("waiting") {
            None | Some("0") => false,
            Some("1" | "on") => true,
            Some(text) => return Err(format!("`waiting={text}`: say waiting=1 or leave it out")),
        },
        after: get("after").map(parse_id).transpose()?,
        limit,
    })
}

/// The link to the page after `last`, keeping the filters.
fn next_page(params: &HashMap<String, String>, last: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = PARAMS
        .iter()
        .filter(|&&name| name != "after")
        .filter_map(|&name| params.get(name).map(|v| (name, v.as_str())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    pairs.push(("after", last));
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("/sagas?{}", query.join("&"))
}

/// Percent-encodes a query value.
pub(super) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_fields_are_no_filter_and_mistakes_are_named() {
        let f = filter(&params(&[("status", ""), ("type", "OrderSaga")])).unwrap();
        assert_eq!(f.status, None);
        assert_eq!(f.saga_type.as_deref(), Some("OrderSaga"));
        assert_eq!(
            filter(&params(&[("since", "yesterday")])).unwrap_err(),
            "`yesterday` is not an age like 30s, 15m, 2h or 7d"
        );
        assert!(filter(&params(&[("colour", "red")]))
            .unwrap_err()
            .starts_with("unknown filter `colour`"));
        assert!(filter(&params(&[("limit", "0")])).is_err());
    }

    #[test]
    fn the_next_page_keeps_the_filters() {
        let link = next_page(&params(&[("type", "A&B"), ("after", "x")]), "id1");
        assert_eq!(link, "/sagas?type=A%26B&after=id1");
    }
}
