//! `/`: counts by status and type, the oldest running sagas, the next durable timer, and the
//! sagas needing attention (parked, compensation failed, failed past the pivot).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use saga_runtime::store::{SagaQuery, SagaSummary};

use super::page::{self, saga_link, when};
use super::sagas::encode;
use super::App;
use crate::filter::STATUSES;
use crate::text;

/// How many sagas each short list on the overview shows.
const SHORT: usize = 10;

/// The statuses an operator has to look at.
const ATTENTION: [&str; 3] = ["parked", "compensation_failed", "failed"];

pub async fn page(State(app): State<Arc<App>>) -> Response {
    match render(&app).await {
        Ok(body) => page::shell("Overview", true, body).into_response(),
        Err(error) => page::store_error(error),
    }
}

async fn render(app: &App) -> Result<Markup, saga_runtime::store::StoreError> {
    let store = app.db.store();
    let counts = store.counts().await?;
    let oldest = store
        .list(SagaQuery::new().status("running").limit(SHORT))
        .await?;
    let waiting = store.list(SagaQuery::new().waiting().limit(SHORT)).await?;
    let mut attention = Vec::new();
    for status in ATTENTION {
        attention.extend(
            store
                .list(SagaQuery::new().status(status).limit(SHORT))
                .await?,
        );
    }

    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_type: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for count in &counts {
        *by_status.entry(&count.status).or_default() += count.count;
        *by_type
            .entry(&count.saga_type)
            .or_default()
            .entry(&count.status)
            .or_default() += count.count;
    }
    let total: u64 = by_status.values().sum();
    Ok(html! {
        section #counts {
            h2 { "By status" }
            div.tiles {
                a.tile href="/sagas" { span.count { (total) } span { "all" } }
                @for status in STATUSES {
                    @let count = by_status.get(status).copied().unwrap_or(0);
                    a class={ "tile " (status) } href={ "/sagas?status=" (status) }
                        data-status=(status) {
                        span.count { (count) }
                        (page::status(status))
                    }
                }
            }
            @if by_type.is_empty() {
                p.empty { "The store holds no saga yet." }
            } @else {
                table #by-type {
                    thead { tr { th { "type" } @for s in STATUSES { th.num { (s.replace('_', " ")) } } } }
                    tbody {
                        @for (saga_type, statuses) in &by_type {
                            tr {
                                td { a href={ "/sagas?type=" (encode(saga_type)) } { (saga_type) } }
                                @for status in STATUSES {
                                    td.num { (statuses.get(status).copied().unwrap_or(0)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #timers {
            h2 { "Waiting on timers" }
            @if waiting.is_empty() {
                p.empty { "No saga waits on a durable timer." }
            } @else {
                table {
                    thead { tr { th { "saga" } th { "type" } th { "status" } th { "wakes" } } }
                    tbody {
                        @for s in &waiting {
                            tr {
                                td { (saga_link(s.id)) }
                                td { (s.saga_type) }
                                td { (page::status(s.status.name())) }
                                td { @if let Some(at) = s.wake_at { (when(at)) } }
                            }
                        }
                    }
                }
                p { a href="/sagas?waiting=1" { "All sagas waiting on a timer" } }
            }
        }
        section #oldest {
            h2 { "Oldest running" }
            (short_list(&oldest, "No saga is running."))
        }
        section #attention {
            h2 { "Needing attention" }
            (short_list(&attention, "Nothing is parked, failed or stuck in its rollback."))
        }
    })
}

/// A few sagas, one row each.
fn short_list(sagas: &[SagaSummary], empty: &str) -> Markup {
    html! {
        @if sagas.is_empty() {
            p.empty { (empty) }
        } @else {
            table {
                thead { tr { th { "saga" } th { "type" } th { "status" } th { "started" } th { "updated" } } }
                tbody {
                    @for s in sagas {
                        tr {
                            td { (saga_link(s.id)) }
                            td { (s.saga_type) }
                            td { (page::status(s.status.name())) }
                            td { (when(s.created_at)) }
                            td { (text::ago(s.updated_at)) }
                        }
                    }
                }
            }
        }
    }
}
