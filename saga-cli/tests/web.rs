//! `saga web`, the real binary, against a SQLite store filled by real sagas (completed,
//! compensated, parked, running in this test's engine, one with markup in its context): what
//! each page shows, the errors for bad input, and that actions are refused (changing nothing)
//! when read-only, without the page's anti-forgery token, from another origin or without the
//! access token, and do their work when all is in order.

use std::process::Command;
use std::time::Duration;

use saga_runtime::store::{SagaStore, SqliteStore};
use saga_runtime::{SagaId, SagaStatus};

mod support;
use support::server::{field, serve};
use support::web::{running, running_at};
use support::{
    compensated_by_cancel, engine, filled, parked, postgres_engine, waiting, Order, Orders, HANGING,
};

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_what_the_store_holds_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (path, done, undone) = filled(dir.path()).await;
    let stuck = parked(&path, "stuck").await;
    let engine = engine(&path);
    let desk = running(&engine, "desk").await;
    let markup = Orders::on(&engine)
        .run(Order {
            item: "<script>alert(1)</script>".into(),
            ..Order::default()
        })
        .await
        .unwrap()
        .id();

    let settling = waiting(&engine, &path).await;
    let sofa = running_at(&engine, "sofa", "sofa@charge", 1).await;
    let web = serve(&path, &[]);
    let checks = blocking(move || {
        // The overview: counts by status, the running saga among the oldest, the parked one
        // needing attention.
        let overview = web.get("/");
        assert_eq!(overview.status, 200, "{}", overview.body);
        for (status, count) in [
            ("completed", 2),
            ("compensated", 1),
            ("parked", 1),
            ("running", 3),
        ] {
            let tile = format!(
                "href=\"/sagas?status={status}\" data-status=\"{status}\"><span class=\"count\">{count}</span>"
            );
            assert!(overview.body.contains(&tile), "{tile} in {}", overview.body);
        }
        let section = |page: &str, id: &str| {
            let start = page.find(&format!("<section id=\"{id}\">")).unwrap();
            let end = page[start..].find("</section>").unwrap();
            page[start..start + end].to_owned()
        };
        assert!(section(&overview.body, "oldest").contains(&desk.to_string()));
        let timers = section(&overview.body, "timers");
        assert!(timers.contains(&settling.to_string()), "{timers}");
        assert!(
            timers.contains("<time title=") && timers.contains(">in "),
            "ahead: {timers}"
        );
        let list = web.get("/sagas?waiting=1");
        assert!(
            list.body.contains(&settling.to_string()) && !list.body.contains(&desk.to_string())
        );
        let attention = section(&overview.body, "attention");
        assert!(attention.contains(&stuck.to_string()), "{attention}");
        assert!(!attention.contains(&done.to_string()), "{attention}");

        // The list, filtered by status and by key.
        let list = web.get("/sagas?status=compensated&type=Orders");
        assert_eq!(list.status, 200);
        assert!(list.body.contains(&undone.to_string()) && !list.body.contains(&done.to_string()));
        let list = web.get("/sagas?key=order-1&status=");
        assert!(list.body.contains(&done.to_string()) && !list.body.contains(&undone.to_string()));
        let first = web.get("/sagas?limit=2");
        assert!(
            first.body.contains("rel=\"next\""),
            "a full page links to the next"
        );

        // Bad filters and unknown sagas.
        let bad = web.get("/sagas?status=done");
        assert_eq!(bad.status, 400);
        shows(&bad, "unknown status `done`");
        let bad = web.get("/sagas?since=yesterday");
        assert_eq!(bad.status, 400);
        shows(&bad, "`yesterday` is not an age");
        let bad = web.get("/sagas?colour=red");
        assert_eq!(bad.status, 400);
        let unknown = SagaId::new();
        let missing = web.get(&format!("/sagas/{unknown}"));
        assert_eq!(missing.status, 404);
        shows(&missing, &format!("no saga with id {unknown}"));
        assert_eq!(web.get("/sagas/not-an-id").status, 404);
        assert_eq!(web.get("/nowhere").status, 404);

        // Markup in a context is shown as text.
        let page = web.get(&format!("/sagas/{markup}"));
        assert_eq!(page.status, 200);
        shows(&page, "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert!(!page.body.contains("<script>alert"), "{}", page.body);

        // The running saga: where it is, who holds it, what is ahead, what a failure would do.
        let page = web.get(&format!("/sagas/{desk}"));
        shows(&page, "running</span> at <b>reserve</b>");
        shows(&page, "id=\"token\""); // the fencing token
        shows(&page, "data-step=\"charge\"><div class=\"node ahead\"");
        shows(&page, "class=\"node running current\"");
        shows(
            &page,
            "If <b>reserve</b> failed now: nothing before it needs undoing",
        );
        shows(&page, "data-live"); // a running saga's page updates itself

        // The compensated saga: the failed step, the compensation that ran, the rollback apart.
        let page = web.get(&format!("/sagas/{undone}"));
        shows(&page, "data-step=\"charge\"><div class=\"node failed\"");
        shows(&page, "class=\"node undo done\"");
        shows(&page, "<li class=\"undo rollback\">");
        assert!(
            !page.body.contains("data-live"),
            "an ended saga's page is still"
        );

        // Read-only: no action is offered and every one is refused.
        assert!(!page.body.contains("id=\"actions\""));
        for (id, action) in [(desk, "cancel"), (stuck, "resume"), (undone, "retry")] {
            let refused = web.post(&format!("/sagas/{id}/{action}"), None, &[("csrf", "x")]);
            assert_eq!(refused.status, 403, "{action}");
            shows(&refused, "read-only");
        }
        assert_eq!(web.get(&format!("/sagas/{desk}/cancel")).status, 403);
    });
    checks.await.unwrap();
    let status = Orders::on(&engine).status(desk).await.unwrap();
    assert!(matches!(status, SagaStatus::Running { .. }), "{status:?}");
    HANGING
        .lock()
        .unwrap()
        .retain(|i| i != "desk" && i != "sofa@charge");
    assert!(Orders::on(&engine).wait(desk).await.unwrap().is_completed());
    assert!(Orders::on(&engine).wait(sofa).await.unwrap().is_completed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_page_token_the_origin_and_the_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let (path, done, _) = filled(dir.path()).await;
    let engine = engine(&path);
    let table = running(&engine, "table").await;
    // In its last step: too late to cancel, so no cancel is offered.
    let bench = running_at(&engine, "bench", "bench@charge", 1).await;

    let web = serve(&path, &["--actions", "--token", "s3cret"]);
    let refusals = blocking(move || {
        shows(
            &web.get(&format!("/sagas/{table}")),
            "class=\"button cancel\"",
        );
        let last = web.get(&format!("/sagas/{bench}"));
        assert!(
            !last.body.contains("class=\"button cancel\""),
            "{}",
            last.body
        );
        let confirm = web.get(&format!("/sagas/{table}/cancel"));
        assert_eq!(confirm.status, 200, "{}", confirm.body);
        assert!(
            confirm.body.contains("name=\"token\""),
            "asks for the access token"
        );
        let csrf = field(&confirm.body, "csrf");
        let wrong_csrf: String = csrf
            .chars()
            .map(|c| if c == '0' { '1' } else { '0' })
            .collect();
        let origin = web.origin();
        let path = format!("/sagas/{table}/cancel");
        // A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) names its own
        // host: refused before anything else.
        let rebound = web.request(
            "GET",
            &format!("/sagas/{table}/cancel"),
            &[("Host", "evil.example:80")],
            "",
        );
        assert_eq!(rebound.status, 421, "{}", rebound.body);
        let cases = [
            (
                "no anti-forgery token",
                web.post(&path, Some(&origin), &[("token", "s3cret")]),
                403,
            ),
            (
                "a wrong one of the right length",
                web.post(
                    &path,
                    Some(&origin),
                    &[("csrf", &wrong_csrf), ("token", "s3cret")],
                ),
                403,
            ),
            (
                "another origin",
                web.post(
                    &path,
                    Some("http://evil.example"),
                    &[("csrf", &csrf), ("token", "s3cret")],
                ),
                403,
            ),
            (
                "no access token",
                web.post(&path, Some(&origin), &[("csrf", &csrf)]),
                401,
            ),
            (
                "a wrong access token",
                web.post(&path, Some(&origin), &[("csrf", &csrf), ("token", "guess")]),
                401,
            ),
        ];
        for (case, response, status) in cases {
            assert_eq!(response.status, status, "{case}: {}", response.body);
            assert!(
                response.body.contains("Refused"),
                "{case}: {}",
                response.body
            );
        }
        (web, csrf)
    })
    .await
    .unwrap();
    let (web, csrf) = refusals;
    // Nothing changed.
    let store = SqliteStore::options(&path).read_only(true).open().unwrap();
    let record = store.load(table).await.unwrap().unwrap();
    assert!(!record.cancel_requested, "no cancellation was recorded");
    assert!(matches!(record.state.status, SagaStatus::Running { .. }));

    let accepted = blocking(move || {
        let origin = web.origin();
        let ok = web.post(
            &format!("/sagas/{table}/cancel"),
            Some(&origin),
            &[("csrf", &csrf), ("token", "s3cret")],
        );
        assert_eq!(ok.status, 200, "{}", ok.body);
        shows(&ok, "Cancellation requested");
        // A request the saga's state does not allow: refused with the reason.
        let refused = web.post(
            &format!("/sagas/{done}/resume"),
            Some(&origin),
            &[("csrf", &csrf), ("token", "s3cret")],
        );
        assert_eq!(refused.status, 409, "{}", refused.body);
        shows(&refused, "cannot resume");
        web
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    HANGING
        .lock()
        .unwrap()
        .retain(|i| i != "table" && i != "bench@charge");
    let ctx = compensated_by_cancel(&engine, table).await;
    assert!(!ctx.reserved, "reserve was compensated");
    drop(accepted);
}

#[test]
fn actions_on_an_open_address_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    std::fs::write(&path, b"").unwrap();
    // `saga web ARGS` refuses to start, saying why.
    let refusal = |args: &[&str]| {
        let output = Command::new(assert_cmd::cargo::cargo_bin("saga"))
            .env_remove("SAGA_WEB_TOKEN")
            .arg("--db")
            .arg(&path)
            .args(["web", "--bind", "0.0.0.0", "--port", "0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = refusal(&["--actions"]);
    assert!(
        stderr.contains("--actions on 0.0.0.0 needs --token"),
        "{stderr}"
    );
    // An empty token is no token.
    let stderr = refusal(&["--actions", "--token", ""]);
    assert!(
        stderr.contains("--token (or SAGA_WEB_TOKEN) is empty"),
        "{stderr}"
    );
}

/// The same pages and a cancel on PostgreSQL (skipped, saying so, without `SAGA_POSTGRES_URL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_on_postgres() {
    let Ok(url) = std::env::var("SAGA_POSTGRES_URL") else {
        eprintln!("SKIPPED: this PostgreSQL test needs SAGA_POSTGRES_URL");
        return;
    };
    let (engine, schema) = postgres_engine(&url, "web").await;
    let declined = Orders::on(&engine)
        .run(Order {
            item: "<b>lamp</b>".into(),
            fail_charge: true,
            ..Order::default()
        })
        .await
        .unwrap()
        .id();
    let chair = running(&engine, "chair").await;
    let web = serve(&url, &["--schema", &schema, "--actions"]);
    let checks = blocking(move || {
        let overview = web.get("/");
        assert_eq!(overview.status, 200, "{}", overview.body);
        assert!(overview
            .body
            .contains("data-status=\"compensated\"><span class=\"count\">1</span>"));
        let list = web.get("/sagas?status=running");
        assert!(
            list.body.contains(&chair.to_string()) && !list.body.contains(&declined.to_string())
        );
        let page = web.get(&format!("/sagas/{declined}"));
        shows(&page, "&lt;b&gt;lamp&lt;/b&gt;");
        shows(&page, "class=\"node undo done\"");
        let confirm = web.get(&format!("/sagas/{chair}/cancel"));
        let csrf = field(&confirm.body, "csrf");
        let done = web.post(
            &format!("/sagas/{chair}/cancel"),
            Some(&web.origin()),
            &[("csrf", &csrf)],
        );
        assert_eq!(done.status, 200, "{}", done.body);
        web
    });
    let web = checks.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    HANGING.lock().unwrap().retain(|i| i != "chair");
    let ctx = compensated_by_cancel(&engine, chair).await;
    assert!(!ctx.reserved, "reserve was compensated");
    drop(web);
    drop(engine);
    // The schema goes with the test (a test database lives long).
    support::postgres_client(&url)
        .await
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// Checks that a page's HTML holds `part`, showing the page if not.
fn shows(page: &support::server::Response, part: &str) {
    assert!(page.body.contains(part), "no {part:?} in {}", page.body);
}
