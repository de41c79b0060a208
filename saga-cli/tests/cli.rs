//! The real `saga` binary against stores filled by real sagas: what each command prints, that
//! looking changes nothing (the file byte for byte), the errors, and operator requests acting
//! on sagas that another process (this test's engine) runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use saga_runtime::{Saga, SagaId};

mod support;
use support::{
    compensated_by_cancel, engine, error, filled, parked, postgres_engine, saga_cmd, stdout, Order,
    Orders, HANGING,
};

/// The store's files (the database and its write-ahead log when it holds anything, not the
/// shared-memory index that readers mark), byte for byte, once they have stopped changing (an engine that was dropped
/// may still be checkpointing).
fn files(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let read = || {
        let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with("-shm"))
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            // A reader of a WAL database may create the log empty: no write is pending either way.
            .filter(|(p, bytes)| !(p.to_string_lossy().ends_with("-wal") && bytes.is_empty()))
            .collect();
        files.sort();
        files
    };
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Which files differ, by name and length (not their bytes: too long to print).
fn changed(before: &[(PathBuf, Vec<u8>)], after: &[(PathBuf, Vec<u8>)]) -> Vec<String> {
    let names = |files: &[(PathBuf, Vec<u8>)]| -> Vec<(PathBuf, usize)> {
        files.iter().map(|(p, b)| (p.clone(), b.len())).collect()
    };
    if names(before) != names(after) {
        return vec![format!("{:?} became {:?}", names(before), names(after))];
    }
    before
        .iter()
        .zip(after)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looking_shows_what_the_store_holds_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, done, undone) = filled(dir.path()).await;
    let before = files(&path);

    let list = stdout(saga_cmd(&path).arg("list"));
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("ID"), "{list}");
    assert!(
        lines[0].contains("STATUS") && lines[0].contains("KEY"),
        "{list}"
    );
    assert_eq!(lines.len(), 3, "a header and two sagas: {list}");
    assert!(lines[1].starts_with(&done.to_string()) && lines[1].contains("completed"));
    assert!(lines[1].contains("order-1"), "{list}");
    assert!(lines[2].starts_with(&undone.to_string()) && lines[2].contains("compensated"));

    let json: serde_json::Value =
        serde_json::from_str(&stdout(saga_cmd(&path).args(["list", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["status"], "completed");
    assert_eq!(json[0]["type"], "Orders");
    assert_eq!(json[1]["status"], "compensated");

    let filtered = stdout(saga_cmd(&path).args(["list", "--status", "compensated"]));
    assert_eq!(filtered.lines().count(), 2, "{filtered}");
    assert!(filtered.contains(&undone.to_string()));
    let by_key = stdout(saga_cmd(&path).args(["list", "--key", "order-1", "--json"]));
    assert!(by_key.contains(&done.to_string()) && !by_key.contains(&undone.to_string()));
    let page = stdout(saga_cmd(&path).args(["list", "--limit", "1"]));
    assert!(page.contains(&format!("(more: --after {done})")), "{page}");
    let next = stdout(saga_cmd(&path).args(["list", "--after", &done.to_string()]));
    assert!(next.contains(&undone.to_string()) && !next.contains(&done.to_string()));
    let recent = stdout(saga_cmd(&path).args(["list", "--since", "1h", "--json"]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&recent)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let shown = stdout(saga_cmd(&path).args(["show", &done.to_string()]));
    assert!(
        shown.starts_with(&format!("saga {done} (Orders)\nstatus: completed\n")),
        "{shown}"
    );
    for expected in [
        "steps: reserve -> charge",
        "idempotency key: order-1",
        "\"item\": \"book\"",
        "reserve: attempt 1",
        "reserve: completed (attempt 1,",
        "charge: completed (attempt 1,",
        "completed in",
    ] {
        assert!(shown.contains(expected), "`{expected}` in:\n{shown}");
    }
    let rolled_back = stdout(saga_cmd(&path).args(["show", &undone.to_string()]));
    for expected in [
        "status: compensated",
        "charge: failed (attempt 1): card declined",
        "rollback: ",
        "    ",
        "undo reserve: done (attempt 1)",
        "compensated in",
    ] {
        assert!(
            rolled_back.contains(expected),
            "`{expected}` in:\n{rolled_back}"
        );
    }
    let record: serde_json::Value = serde_json::from_str(&stdout(saga_cmd(&path).args([
        "show",
        &undone.to_string(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(record["status"], "compensated");
    assert_eq!(record["context"]["item"], "lamp");
    assert!(record["history"].as_array().unwrap().len() > 5);

    let stats = stdout(saga_cmd(&path).arg("stats"));
    assert!(stats.contains("TYPE") && stats.contains("COUNT"), "{stats}");
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("Orders") && l.contains("completed") && l.ends_with('1')),
        "{stats}"
    );
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("Orders") && l.contains("compensated") && l.ends_with('1')),
        "{stats}"
    );
    assert!(stats.contains("no saga running"), "{stats}");

    // The type as its engine recorded it: the same chart as the code's.
    let chart = stdout(saga_cmd(&path).args(["graph", "Orders"]));
    assert_eq!(chart, Orders::mermaid());
    assert!(chart.contains("s1 -. fails .-> c0"), "{chart}");
    let path_done = stdout(saga_cmd(&path).args(["graph", &done.to_string()]));
    assert!(path_done.starts_with(&chart), "{path_done}");
    assert!(
        path_done.contains("\n    class s0,s1,completed done\n"),
        "{path_done}"
    );
    assert!(!path_done.contains("failed\n"), "{path_done}");
    let path_undone = stdout(saga_cmd(&path).args(["graph", &undone.to_string()]));
    assert!(
        path_undone.contains("\n    class s0,c0,compensated done\n"),
        "{path_undone}"
    );
    assert!(
        path_undone.contains("\n    class s1 failed\n"),
        "{path_undone}"
    );
    let fenced = stdout(saga_cmd(&path).args(["graph", "Orders", "--markdown"]));
    assert_eq!(fenced, format!("```mermaid\n{chart}```\n"));

    let after = files(&path);
    assert!(
        changed(&before, &after).is_empty(),
        "looking changed the store's files: {:?}",
        changed(&before, &after)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let (path, done, _) = filled(dir.path()).await;
    let missing = dir.path().join("missing.db");
    assert_eq!(
        error(saga_cmd(&missing).arg("list")),
        format!("saga: {}: no such file", missing.display())
    );
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database").unwrap();
    assert!(error(saga_cmd(&text).arg("list")).contains("not a database"));
    let unknown = SagaId::new();
    assert_eq!(
        error(saga_cmd(&path).args(["show", &unknown.to_string()])),
        format!("saga: no saga with id {unknown}")
    );
    assert!(error(saga_cmd(&path).args(["show", "42"])).contains("`42` is not a saga id"));
    assert!(
        error(saga_cmd(&path).args(["list", "--status", "done"])).contains("unknown status `done`")
    );
    assert!(error(saga_cmd(&path).args(["list", "--since", "3 weeks"])).contains("not an age"));
    let refused = error(saga_cmd(&path).args(["cancel", &done.to_string()]));
    assert!(
        refused.contains(&done.to_string()) && refused.contains("has ended"),
        "{refused}"
    );
    let refused = error(saga_cmd(&path).args(["resume", &done.to_string()]));
    assert!(refused.contains("parked"), "{refused}");
    assert_eq!(
        error(saga_cmd(&path).args(["graph", "Invoices"])),
        "saga: no saga type `Invoices` is recorded in this store (it has Orders)"
    );
    assert_eq!(
        error(saga_cmd(&path).args(["graph", &unknown.to_string()])),
        format!("saga: no saga {unknown} in this store")
    );
    let mut no_db = Command::cargo_bin("saga").unwrap();
    no_db.env_remove("SAGA_DB").arg("list");
    assert_eq!(
        error(&mut no_db),
        "saga: no store: pass --db PATH|URL or set SAGA_DB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_saga_another_process_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let engine = engine(&path);
    // `reserve` hangs until the tool has drawn the saga and asked to cancel it, however long
    // starting the tool takes on a loaded machine.
    HANGING.lock().unwrap().push("desk".into());
    let id = Orders::on(&engine)
        .start(Order {
            item: "desk".into(),
            ..Order::default()
        })
        .await
        .unwrap();
    let path_for_cli = path.clone();
    let (chart, said) = tokio::task::spawn_blocking(move || {
        (
            stdout(saga_cmd(&path_for_cli).args(["graph", &id.to_string()])),
            stdout(saga_cmd(&path_for_cli).args(["cancel", &id.to_string()])),
        )
    })
    .await
    .unwrap();
    assert!(said.contains("cancel requested"), "{said}");
    // While `reserve` runs: it is under way, `charge` is ahead.
    assert!(chart.contains("\n    class s0 running\n"), "{chart}");
    assert!(chart.contains("\n    class s1 ahead\n"), "{chart}");
    // The worker learns of the cancel at its next lease renewal (every 100 ms here); then
    // `reserve` ends, and the saga stops at that step boundary.
    tokio::time::sleep(Duration::from_millis(600)).await;
    HANGING.lock().unwrap().retain(|item| item != "desk");
    let ctx = compensated_by_cancel(&engine, id).await;
    assert!(!ctx.reserved, "reserve was compensated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_reopens_a_parked_saga_for_a_worker_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    // Interrupted mid-step by a runtime that goes away, then parked by a worker that does not
    // know its type.
    let interrupted = parked(&path, "stuck").await;
    let listed = stdout(saga_cmd(&path).args(["list", "--status", "parked"]));
    assert!(listed.contains(&interrupted.to_string()), "{listed}");

    let worker = engine(&path);
    worker.recover().await.unwrap();
    let path_for_cli = path.clone();
    let said = tokio::task::spawn_blocking(move || {
        stdout(saga_cmd(&path_for_cli).args(["resume", &interrupted.to_string()]))
    })
    .await
    .unwrap();
    assert!(said.contains("resumed"), "{said}");
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        Orders::on(&worker).wait(interrupted),
    )
    .await
    .expect("resumed and finished")
    .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert!(outcome.ctx().reserved && outcome.ctx().charged);
}

/// The same commands on PostgreSQL (skipped, saying so, without `SAGA_POSTGRES_URL`): a schema
/// filled by real sagas is listed and shown; a schema without a store is an error, and is not
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgres() {
    let Ok(url) = std::env::var("SAGA_POSTGRES_URL") else {
        eprintln!("SKIPPED: this PostgreSQL test needs SAGA_POSTGRES_URL");
        return;
    };
    let (engine, schema) = postgres_engine(&url, "cli").await;
    let done = Orders::on(&engine)
        .run(Order {
            item: "chair".into(),
            ..Order::default()
        })
        .await
        .unwrap();
    let (db, in_schema) = (url.clone(), schema.clone());
    let pg = move |args: &[&str]| {
        let mut command = Command::cargo_bin("saga").unwrap();
        command
            .env_remove("SAGA_DB")
            .env("NO_COLOR", "1")
            .args(["--db", &db, "--schema", &in_schema])
            .args(args);
        command
    };
    let id = done.id().to_string();
    let url_for_missing = url.clone();
    let (list, shown, stats, chart, missing) = tokio::task::spawn_blocking(move || {
        (
            stdout(&mut pg(&["list"])),
            stdout(&mut pg(&["show", &id])),
            stdout(&mut pg(&["stats"])),
            stdout(&mut pg(&["graph", &id])),
            error(
                Command::cargo_bin("saga")
                    .unwrap()
                    .env_remove("SAGA_DB")
                    .args(["--db", &url_for_missing, "--schema", "no_such_schema_here"])
                    .arg("list"),
            ),
        )
    })
    .await
    .unwrap();
    assert!(
        list.contains(&done.id().to_string()) && list.contains("completed"),
        "{list}"
    );
    assert!(
        shown.contains("status: completed") && shown.contains("\"item\": \"chair\""),
        "{shown}"
    );
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("Orders") && l.ends_with('1')),
        "{stats}"
    );
    assert!(
        chart.starts_with(&Orders::mermaid()) && chart.contains("class s0,s1,completed done"),
        "{chart}"
    );
    assert!(missing.contains("holds no saga store"), "{missing}");
    let client = support::postgres_client(&url).await;
    let created: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'no_such_schema_here')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!created, "looking created nothing");
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// `saga new` writes the module checked in as `tests/generated/payment_saga.rs`, which the
/// `generated_saga` test target compiles and whose own test it runs; it refuses bad names and
/// never overwrites a file.
#[test]
fn new_writes_a_saga_module_that_compiles_and_passes_its_test() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("payment_saga.rs");
    let new = |args: &[&str]| {
        let mut command = Command::cargo_bin("saga").unwrap();
        command
            .env_remove("SAGA_DB")
            .current_dir(dir.path())
            .arg("new")
            .args(args);
        command
    };
    let said = stdout(&mut new(&[
        "PaymentSaga",
        "--steps",
        "reserve,charge,ship",
        "--pivot",
        "charge",
    ]));
    assert!(
        said.starts_with("wrote payment_saga.rs: declare it with `mod payment_saga;`"),
        "{said}"
    );
    let checked_in =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/generated/payment_saga.rs");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&checked_in).unwrap(),
        "the tool's output differs from the compiled snapshot; regenerate it with \
         `saga new PaymentSaga --steps reserve,charge,ship --pivot charge --out tests/generated/payment_saga.rs`"
    );
    assert_eq!(
        error(&mut new(&["PaymentSaga", "--steps", "a"])),
        format!("saga: payment_saga.rs: exists already; not overwritten")
    );
    assert!(error(&mut new(&["payment", "--steps", "a"])).contains("`payment` is not a saga name"));
    assert!(error(&mut new(&["Pay", "--steps", "a,Bad"])).contains("`Bad` is not a step name"));
    assert!(error(&mut new(&["Pay", "--steps", "a,fn"])).contains("`fn` is not a step name"));
    assert!(error(&mut new(&["Pay", "--steps", "a,a"])).contains("step `a` is listed twice"));
    assert!(error(&mut new(&["Pay", "--steps", "a,b", "--pivot", "c"]))
        .contains("the pivot `c` is not one of the steps (a, b)"));
    let no_undo = dir.path().join("plain.rs");
    stdout(&mut new(&[
        "Plain",
        "--steps",
        "a,b",
        "--no-compensate",
        "--out",
        no_undo.to_str().unwrap(),
    ]));
    let plain = std::fs::read_to_string(no_undo).unwrap();
    assert!(
        plain.contains("#[saga_step(nothing_to_undo, timeout"),
        "{plain}"
    );
    assert!(!plain.contains("undo_a"), "{plain}");
}
