//! The dashboard in a real browser: Debian's headless Chromium driven through ChromeDriver
//! (fantoccini). A store filled by real sagas (completed, compensated, parked, running); each
//! page opened and checked for what it shows; the list filtered through its form; a running saga
//! cancelled from its page, the page updating itself as the saga compensates; a screenshot of
//! each page kept under `target/tmp/web-screenshots/`.
//!
//! Needs `SAGA_CHROMEDRIVER` (the path of `chromedriver`; `.ci/run` installs Debian's
//! `chromium-driver` and sets it). Without it the test says it was skipped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

mod support;
use support::server::serve;
use support::web::running;
use support::{compensated_by_cancel, engine, filled, parked, waiting, HANGING};

/// ChromeDriver, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts ChromeDriver on a free port; returns it and its URL once it accepts connections.
fn chromedriver(path: &str) -> (Driver, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "chromedriver did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Driver(child), format!("http://127.0.0.1:{port}"))
}

/// A headless Chromium session, with the flags this machine's closed network needs.
async fn browser(driver: &str, profile: &Path) -> Client {
    let chromium = std::env::var("SAGA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver)
        .await
        .expect("a Chromium session")
}

/// Where screenshots are kept.
fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits (up to 20 s) until the text of `css` contains `wanted`, without reloading: the page's
/// own script has to bring it.
async fn until_text(client: &Client, css: &str, wanted: &str) {
    let started = Instant::now();
    loop {
        let now = match client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if now.contains(wanted) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{css} still says {now:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium() {
    let Ok(driver_path) = std::env::var("SAGA_CHROMEDRIVER") else {
        eprintln!(
            "skipped: set SAGA_CHROMEDRIVER to ChromeDriver's path (Debian's chromium-driver: \
             /usr/bin/chromedriver) to run the dashboard in a browser"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (path, _done, undone) = filled(dir.path()).await;
    let stuck = parked(&path, "stuck").await;
    let engine = engine(&path);
    let desk = running(&engine, "desk").await;
    let settling = waiting(&engine, &path).await;
    let web = serve(&path, &["--actions"]);
    let base = format!("http://{}", web.address);
    let (_driver, driver_url) = chromedriver(&driver_path);
    let client = browser(&driver_url, &dir.path().join("profile")).await;

    // The overview.
    client.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(text(&client, "a.tile.completed .count").await, "1");
    assert_eq!(text(&client, "a.tile.compensated .count").await, "1");
    assert_eq!(text(&client, "a.tile.parked .count").await, "1");
    assert_eq!(text(&client, "a.tile.running .count").await, "2");
    assert!(text(&client, "#timers")
        .await
        .contains(&settling.to_string()));
    assert!(text(&client, "#oldest").await.contains(&desk.to_string()));
    assert!(text(&client, "#attention")
        .await
        .contains(&stuck.to_string()));
    screenshot(&client, "overview").await;

    // The list, filtered through its form.
    client.goto(&format!("{base}/sagas")).await.unwrap();
    assert_eq!(
        client
            .find_all(Locator::Css("#sagas tbody tr"))
            .await
            .unwrap()
            .len(),
        5
    );
    client
        .find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("compensated")
        .await
        .unwrap();
    client
        .find(Locator::Css("#filters button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let started = Instant::now();
    while !client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("status=compensated")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the form was not sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = client
        .find_all(Locator::Css("#sagas tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].attr("data-id").await.unwrap(),
        Some(undone.to_string())
    );
    screenshot(&client, "list-filtered").await;

    // The parked saga.
    client.goto(&format!("{base}/sagas/{stuck}")).await.unwrap();
    assert!(text(&client, "#status").await.starts_with("parked"));
    assert_eq!(text(&client, "#actions").await, "resume");
    screenshot(&client, "saga-parked").await;

    // The running saga: where it is, what is ahead, what a failure would do.
    client.goto(&format!("{base}/sagas/{desk}")).await.unwrap();
    assert_eq!(text(&client, "#status").await, "running at reserve");
    assert!(text(&client, ".node.current").await.contains("reserve"));
    assert!(text(&client, "li[data-step=charge] .node")
        .await
        .contains("ahead"));
    assert!(text(&client, "#if-failed")
        .await
        .contains("If reserve failed now"));
    screenshot(&client, "saga-running").await;

    // Cancel it from its page: the confirmation, then the result.
    client
        .find(Locator::Css("#actions a.cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text(&client, "h1").await.starts_with("Cancel saga"));
    screenshot(&client, "confirm-cancel").await;
    client
        .find(Locator::Css("#confirm button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The answer is a new page, after the request reached the store: waited for, as a click
    // that submits a form may return before the next page is there.
    until_text(&client, "#result", "Cancellation requested").await;
    screenshot(&client, "cancel-requested").await;

    // Back on its page, it compensates once `reserve` ends: the page updates itself.
    client.goto(&format!("{base}/sagas/{desk}")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    HANGING.lock().unwrap().retain(|item| item != "desk");
    until_text(&client, "#status", "compensated").await;
    until_text(&client, "li[data-step=reserve] .node.undo", "release").await;
    let undo = client
        .find(Locator::Css("li[data-step=reserve] .node.undo"))
        .await
        .unwrap();
    assert_eq!(
        undo.attr("data-state").await.unwrap().as_deref(),
        Some("done")
    );
    assert!(text(&client, "#timeline")
        .await
        .contains("rollback: cancelled"));
    screenshot(&client, "saga-compensated").await;
    let ctx = compensated_by_cancel(&engine, desk).await;
    assert!(!ctx.reserved, "reserve was compensated");

    // The compensated saga from the list.
    client
        .goto(&format!("{base}/sagas/{undone}"))
        .await
        .unwrap();
    assert!(text(&client, "li[data-step=charge] .node")
        .await
        .contains("failed"));
    screenshot(&client, "saga-compensated-by-failure").await;
    client.close().await.unwrap();
    eprintln!("screenshots in {}", shots().display());
}
