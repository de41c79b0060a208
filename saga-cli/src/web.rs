//! `saga web`: the dashboard. An axum server renders every page on the server (maud escapes
//! whatever a saga holds); the only script is the live refresh, and every asset is served by the
//! binary itself, so it works on a machine with no internet access.
//!
//! It is read-only unless started with `--actions`. Actions (cancel, resume, retry) go through
//! the store's operator requests, ask for confirmation, and are refused unless the form carries
//! the page's anti-forgery token, comes from the dashboard's own origin and, when the server
//! has one, the access token (required on an address other than loopback).

mod actions;
mod overview;
mod page;
mod saga;
mod sagas;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use saga_runtime::Engine;

use crate::db::{self, Db};

#[derive(clap::Args)]
pub struct Args {
    /// The address to listen on: only this machine by default.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// The port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Allow cancel, resume and retry from the pages (read-only without it).
    #[arg(long)]
    actions: bool,
    /// The token actions need (required with --actions on an address other than loopback).
    #[arg(long, env = "SAGA_WEB_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// What every handler shares.
pub struct App {
    /// The store, opened to read.
    db: Db,
    /// An engine that runs no saga, for operator requests; `None` when read-only.
    engine: Option<Engine>,
    /// The anti-forgery token every form of this server carries.
    csrf: String,
    /// The access token actions need, if any.
    token: Option<String>,
    /// The port, when the server listens on a loopback address: requests must name a loopback
    /// host.
    loopback_port: Option<u16>,
}

type Shared = Arc<App>;

pub async fn run(db_arg: Option<&str>, schema: &str, args: Args) -> Result<(), String> {
    if args.token.as_deref() == Some("") {
        return Err("--token (or SAGA_WEB_TOKEN) is empty: give a secret, or leave it out".into());
    }
    if args.actions && args.token.is_none() && !args.bind.is_loopback() {
        return Err(format!(
            "--actions on {} needs --token (or SAGA_WEB_TOKEN): anyone who can reach that address \
             could cancel sagas",
            args.bind
        ));
    }
    let db = db::open(db_arg, schema).await?;
    let engine = match args.actions {
        true => Some(db::open_for_writes(db_arg, schema).await?.engine()),
        false => None,
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.bind, args.port))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let app = Arc::new(App {
        db,
        engine,
        csrf: format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
        token: args.token,
        loopback_port: args.bind.is_loopback().then_some(address.port()),
    });
    let mode = match (&app.engine, &app.token) {
        (None, _) => "read-only",
        (Some(_), None) => "actions allowed",
        (Some(_), Some(_)) => "actions allowed with the token",
    };
    // Tests and scripts read the address from this line.
    println!("saga web: listening on http://{address} ({mode})");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/sagas", get(sagas::page))
        .route("/sagas/{id}", get(saga::page))
        .route(
            "/sagas/{id}/{action}",
            get(actions::confirm).post(actions::act),
        )
        .route("/assets/style.css", get(style))
        .route("/assets/live.js", get(live))
        .fallback(not_found)
        .layer(middleware::from_fn(headers))
        .layer(middleware::from_fn_with_state(app.clone(), own_host))
        .with_state(app)
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/style.css"),
    )
}

async fn live() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/live.js"),
    )
}

async fn not_found() -> Response {
    page::error(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
}

/// On a loopback address, answers only requests for a loopback name (`127.0.0.1`, `localhost`,
/// `[::1]`) and its port: a web page whose own name resolves to 127.0.0.1 (DNS rebinding) could
/// otherwise read the dashboard and its forms as if it were the dashboard's own origin.
async fn own_host(State(app): State<Shared>, request: Request, next: Next) -> Response {
    if let Some(port) = app.loopback_port {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let allowed = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|name| host == format!("{name}:{port}"));
        if !allowed {
            return page::error(
                StatusCode::MISDIRECTED_REQUEST,
                "Unknown host",
                "This dashboard answers requests for 127.0.0.1, localhost or [::1] only.",
            );
        }
    }
    next.run(request).await
}

/// Headers on every response: only this server's own scripts, styles and forms; no framing; no
/// guessing of content types.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
