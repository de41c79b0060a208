//! Durable sagas on SQLite: what is recorded survives the engine, `start` returns once the saga
//! is recorded, and recovery resumes interrupted sagas from their last committed state.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{saga, saga_step, Engine, SagaEventKind, SagaId, SagaOutcome, SagaStatus};
use saga_tests::{scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(compensate = undo_a)]
    a
);
scripted!(undo_a as "undo:a");
scripted!(
    #[saga_step(compensate = undo_b, retries = 1, backoff = "0s")]
    b
);
scripted!(undo_b as "undo:b");
scripted!(
    #[saga_step]
    c
);

saga! { Durable(Trail, Script) { a, b, c } }

/// An engine on the file at `path`. Every engine here has the same worker name: one built after
/// another "died" is its restart, and takes back at once what it held.
fn engine(path: &std::path::Path, script: &Arc<Script>) -> Engine {
    Engine::builder()
        .sqlite(path)
        .unwrap()
        .worker_id("durable-test")
        .register::<Durable>(script.clone())
        .build()
}

/// Runs `f` on a runtime that is then dropped with whatever it was running: to the store, the
/// same as the process dying at that point.
fn crash_during<F: std::future::Future>(f: impl FnOnce() -> F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let work = f();
        tokio::select! {
            _ = work => panic!("the work was meant to be interrupted"),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    });
}

/// Runs saga `id` (with `deadline`, if any) until the process "dies" while b hangs; the script
/// it ran with.
fn dies_during_b(path: &std::path::Path, id: SagaId, deadline: Option<Duration>) -> Arc<Script> {
    let script = Arc::new(Script::new().plan("b", [Plan::Sleep(Duration::from_secs(3600))]));
    crash_during(|| {
        let engine = engine(path, &script);
        let deps = script.clone();
        async move {
            let mut request = Durable::on(&engine)
                .request(Trail::default())
                .deps(deps)
                .id(id);
            if let Some(deadline) = deadline {
                request = request.deadline(deadline);
            }
            request.run().await
        }
    });
    script
}

#[tokio::test]
async fn a_completed_saga_is_read_back_by_a_new_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let script = Arc::new(Script::new());
    let outcome = Durable::on(&engine(&path, &script))
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed());

    let reopened = engine(&path, &script);
    let client = Durable::on(&reopened);
    assert_eq!(
        client.status(outcome.id()).await.unwrap(),
        SagaStatus::Completed
    );
    let history = client.history(outcome.id()).await.unwrap();
    assert!(history
        .iter()
        .all(|e| e.saga_id == outcome.id() && e.saga_type == "Durable"));
    assert!(matches!(
        history.first().unwrap().kind,
        SagaEventKind::SagaStarted { .. }
    ));
    assert!(matches!(
        history.last().unwrap().kind,
        SagaEventKind::SagaCompleted { .. }
    ));
    assert_eq!(history.len(), 8);
}

#[tokio::test]
async fn start_returns_once_the_saga_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let script = Arc::new(Script::new().plan("a", [Plan::Sleep(Duration::from_secs(3600))]));
    let engine = engine(&path, &script);
    let id = Durable::on(&engine)
        .start_with(Trail::default(), script.clone())
        .await
        .unwrap();
    // Another connection to the same file sees it at once.
    let other = Engine::builder().sqlite(&path).unwrap().build();
    assert!(Durable::on(&other).status(id).await.is_ok());
}

#[test]
fn an_interrupted_step_runs_again_with_the_same_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let id = SagaId::new();
    let first = dies_during_b(&path, id, None);
    assert_eq!(first.keys(), ["a", "b"]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let second = Arc::new(Script::new());
    runtime.block_on(async {
        let engine = engine(&path, &second);
        let report = engine.recover().await.unwrap();
        assert_eq!(report.resumed, [id]);
        let client = Durable::on(&engine);
        assert!(client.wait(id).await.unwrap().is_completed());
        let history = client.history(id).await.unwrap();
        assert!(history
            .iter()
            .any(|e| matches!(e.kind, SagaEventKind::SagaResumed { .. })));
    });
    assert_eq!(second.keys(), ["b", "c"], "a is not run again; b is");
    let key = |s: &Script, k: &str| s.calls_of(k)[0].idempotency_key.clone();
    assert_eq!(key(&first, "b"), key(&second, "b"));
    assert_eq!(key(&second, "b"), format!("{id}:b"));
}

#[test]
fn a_saga_interrupted_while_compensating_only_finishes_compensating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let id = SagaId::new();
    // c fails, b is compensated, and the process dies while a's compensation runs.
    let first = Arc::new(
        Script::new()
            .plan("c", [Plan::Permanent("no")])
            .plan("undo:a", [Plan::Sleep(Duration::from_secs(3600))]),
    );
    crash_during(|| {
        let engine = engine(&path, &first);
        let deps = first.clone();
        async move {
            Durable::on(&engine)
                .request(Trail::default())
                .deps(deps)
                .id(id)
                .run()
                .await
        }
    });
    assert_eq!(first.keys(), ["a", "b", "c", "undo:b", "undo:a"]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let second = Arc::new(Script::new());
    runtime.block_on(async {
        let engine = engine(&path, &second);
        engine.recover().await.unwrap();
        let outcome = Durable::on(&engine).wait(id).await.unwrap();
        assert!(
            matches!(outcome, SagaOutcome::Compensated { .. }),
            "{outcome:?}"
        );
    });
    assert_eq!(
        second.keys(),
        ["undo:a"],
        "no step runs forward again; b stays compensated"
    );
}

#[tokio::test]
async fn an_idempotency_key_deduplicates_across_engines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let script = Arc::new(Script::new());
    let first = Durable::on(&engine(&path, &script))
        .request(Trail::default())
        .deps(script.clone())
        .idempotency_key("order-1")
        .start()
        .await
        .unwrap();
    let second = Durable::on(&engine(&path, &script))
        .request(Trail::default())
        .deps(script.clone())
        .idempotency_key("order-1")
        .start()
        .await
        .unwrap();
    assert_eq!(first, second);
}

/// A database file as schema version 1 left it (see the fixture's header), plus `extra` SQL.
fn version_1_database(path: &std::path::Path, extra: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(include_str!("fixtures/schema_v1.sql"))
        .unwrap();
    conn.execute_batch(extra).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_migrated_and_its_sagas_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    version_1_database(&path, "");
    let done: SagaId = "0195f3a0-0000-7000-8000-000000000001".parse().unwrap();
    let hung: SagaId = "0195f3a0-0000-7000-8000-000000000002".parse().unwrap();

    let script = Arc::new(Script::new());
    let engine = engine(&path, &script);
    let client = Durable::on(&engine);
    assert_eq!(client.status(done).await.unwrap(), SagaStatus::Completed);
    let history = client.history(done).await.unwrap();
    assert_eq!(history.len(), 8);
    // Entries written before they left out the saga's id and type read the same as new ones.
    assert!(history
        .iter()
        .all(|e| e.saga_id == done && e.saga_type == "Durable"));

    let report = engine.recover().await.unwrap();
    assert_eq!(report.resumed, [hung]);
    assert!(client.wait(hung).await.unwrap().is_completed());
    assert_eq!(script.keys(), ["b", "c"], "resumed at the interrupted step");
    let kinds: Vec<String> = client
        .history(hung)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            format!("{:?}", e.kind)
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds[..5],
        [
            "SagaStarted",
            "StepStarted",
            "StepCompleted",
            "StepStarted",
            "SagaResumed"
        ],
        "the old history, then the new: {kinds:?}"
    );
    assert_eq!(kinds.last().unwrap(), "SagaCompleted");

    // The key recorded by version 1 still finds its saga.
    let again = client
        .request(Trail::default())
        .deps(script.clone())
        .idempotency_key("order-7")
        .start()
        .await
        .unwrap();
    assert_eq!(again, hung);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, saga_runtime::store::SCHEMA_VERSION);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn a_migration_that_would_drop_history_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    version_1_database(
        &path,
        "INSERT INTO saga_history (saga_id, event) VALUES ('no-such-saga', '{}');",
    );
    let error = Engine::builder().sqlite(&path).expect_err("refused");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: cannot migrate the database from schema version 1: 1 of its 13 history \
             entries belong to no saga (nothing was changed)",
            path.display()
        )
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM saga_history WHERE saga_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 13, "still the version 1 table, whole");
}

#[test]
fn a_deadline_holds_across_a_restart_and_the_interrupted_step_is_settled_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let id = SagaId::new();
    // The process dies at 300 ms, before the 500 ms deadline.
    dies_during_b(&path, id, Some(Duration::from_millis(500)));
    // The deadline passes while no worker runs the saga.
    std::thread::sleep(Duration::from_millis(300));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let second = Arc::new(Script::new());
    runtime.block_on(async {
        let engine = engine(&path, &second);
        assert_eq!(engine.recover().await.unwrap().resumed, [id]);
        let client = Durable::on(&engine);
        assert!(matches!(
            client.wait(id).await.unwrap(),
            SagaOutcome::Compensated { .. }
        ));
        let history = client.history(id).await.unwrap();
        assert!(history.iter().any(|e| matches!(
            e.kind,
            SagaEventKind::CompensationStarted {
                reason: saga_runtime::RollbackCause::DeadlineExceeded
            }
        )));
    });
    // b may have had effects before the crash: it runs again (same key) so that it is known to
    // have completed, and is then undone with a; c never runs.
    assert_eq!(second.keys(), ["b", "undo:b", "undo:a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_sees_a_saga_that_another_engine_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let script = Arc::new(Script::new().plan("b", [Plan::Sleep(Duration::from_millis(300))]));
    let runner = engine(&path, &script);
    let id = Durable::on(&runner)
        .start_with(Trail::default(), script.clone())
        .await
        .unwrap();
    // Another engine on the same file hears none of the runner's events.
    let watcher = engine(&path, &Arc::new(Script::new()));
    let outcome = tokio::time::timeout(Duration::from_secs(10), Durable::on(&watcher).wait(id))
        .await
        .expect("wait returned")
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        outcome.ctx().entries,
        ["a", "b", "c"],
        "the final context, as the runner left it"
    );
    assert_eq!(script.keys(), ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_stalled_past_its_lease_stops_and_the_saga_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let script = Arc::new(Script::new().plan("b", [Plan::Sleep(Duration::from_secs(3600))]));
    // Nothing renews the lease while b hangs (the renewal would come in an hour): it expires,
    // as if the process had stalled.
    let engine = Engine::builder()
        .sqlite(&path)
        .unwrap()
        .lease(Duration::from_millis(200))
        .renew_interval(Duration::from_secs(3600))
        .register::<Durable>(script.clone())
        .build();
    let id = Durable::on(&engine)
        .start_with(Trail::default(), script.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(script.keys(), ["a", "b"]);

    // Acquiring it again finds this engine still running it under the expired lease: that run
    // stops, and the new lease is let go rather than held by nobody.
    let report = engine.recover().await.unwrap();
    assert_eq!(
        (report.released.as_slice(), report.resumed.len()),
        ([id].as_slice(), 0)
    );
    assert_eq!(engine.lost_leases(), 1);
    let record = saga_runtime::store::SqliteStore::options(&path)
        .read_only(true)
        .open()
        .unwrap();
    use saga_runtime::store::SagaStore;
    assert!(
        record.load(id).await.unwrap().unwrap().lease.is_none(),
        "released"
    );

    // Once the stale run has let go of the saga, the next pass resumes it: b again, then c.
    let resumed = loop {
        let report = engine.recover().await.unwrap();
        if !report.resumed.is_empty() {
            break report.resumed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(resumed, [id]);
    assert!(Durable::on(&engine).wait(id).await.unwrap().is_completed());
    assert_eq!(script.keys(), ["a", "b", "b", "c"]);
}

#[tokio::test]
async fn a_version_4_database_is_read_as_it_is_then_migrated_and_records_types() {
    use saga_runtime::store::{SagaQuery, SagaStore, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let script = Arc::new(Script::new());
    {
        let engine = engine(&path, &script);
        let outcome = Durable::on(&engine).run(Trail::default()).await.unwrap();
        assert!(outcome.is_completed());
        let store = SqliteStore::options(&path).read_only(true).open().unwrap();
        let types = store.saga_types().await.unwrap();
        assert_eq!(types.len(), 1, "the first run recorded its type: {types:?}");
        assert_eq!(types[0].step_names(), ["a", "b", "c"]);
        assert_eq!(types[0].steps[0].compensation.as_deref(), Some("undo_a"));
    }
    let (id, history) = {
        let store = SqliteStore::options(&path).read_only(true).open().unwrap();
        let id = store.list(SagaQuery::new()).await.unwrap()[0].id;
        (id, store.history(id, 0, 100).await.unwrap().unwrap())
    };
    assert_eq!(history.len(), 8, "{history:?}");
    // What version 4 wrote: no types table, no index of ended sagas, every history entry a row
    // of `saga_history` (none in the saga's row).
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "INSERT INTO saga_history (key, saga, n, event)
                 WITH RECURSIVE kept(saga, n, rest, event) AS (
                     SELECT seq, history_from - 1, history, NULL FROM sagas
                     UNION ALL
                     SELECT saga, n + 1, substr(rest, instr(rest, char(10)) + 1),
                            substr(rest, 1, instr(rest, char(10)) - 1)
                     FROM kept WHERE rest <> '')
                 SELECT (saga << 24) | n, saga, n, event FROM kept WHERE event IS NOT NULL;
             ALTER TABLE sagas DROP COLUMN history;
             ALTER TABLE sagas DROP COLUMN history_from;
             DROP TABLE saga_types; DROP INDEX sagas_ended; PRAGMA user_version = 4;",
        )
        .unwrap();
    let old = SqliteStore::options(&path).read_only(true).open().unwrap();
    assert_eq!(old.list(SagaQuery::new()).await.unwrap().len(), 1);
    assert_eq!(old.saga_types().await.unwrap(), [], "none recorded yet");
    assert_eq!(old.history(id, 0, 100).await.unwrap().unwrap(), history);

    let engine = engine(&path, &script);
    let outcome = Durable::on(&engine).run(Trail::default()).await.unwrap();
    assert!(outcome.is_completed());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, saga_runtime::store::SCHEMA_VERSION);
    let indexed: bool = conn
        .query_row(
            "SELECT count(*) = 1 FROM sqlite_master WHERE type = 'index' AND name = 'sagas_ended'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        indexed,
        "migrated through version 6, which indexes ended sagas"
    );
    let store = SqliteStore::options(&path).read_only(true).open().unwrap();
    assert_eq!(store.saga_types().await.unwrap().len(), 1);
    assert_eq!(
        store.history(id, 0, 100).await.unwrap().unwrap(),
        history,
        "migrated through version 7, which keeps the newest entries in the saga's row"
    );
    assert_eq!(
        store
            .list(SagaQuery::new().status("completed"))
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Schema version 8 writes most history entries in a short form that version 7 cannot read: a
/// version 7 file (its entries objects) is read as it is, migrated when an engine opens it, and
/// then holds both forms, each read back whole.
#[tokio::test]
async fn a_version_7_database_keeps_its_entries_and_new_ones_take_the_short_form() {
    use saga_runtime::store::{SagaQuery, SagaStore, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let script = Arc::new(Script::new());
    let in_row = |id: SagaId| -> String {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT history FROM sagas WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .unwrap()
    };
    let first = Durable::on(&engine(&path, &script))
        .run(Trail::default())
        .await
        .unwrap()
        .id();
    async fn history(store: &SqliteStore, id: SagaId) -> Vec<saga_runtime::SagaEvent> {
        store.history(id, 0, 100).await.unwrap().unwrap()
    }
    let read_only = || SqliteStore::options(&path).read_only(true).open().unwrap();
    let written = history(&read_only(), first).await;
    assert_eq!(written.len(), 8, "{written:?}");
    let short = in_row(first);
    assert!(short.lines().all(|l| l.starts_with('[')), "{short}");

    // As version 7 wrote the same entries: objects, their times in nanoseconds.
    let objects: String = written
        .iter()
        .map(|e| {
            let at = e.at.duration_since(std::time::UNIX_EPOCH).unwrap();
            let kind = serde_json::to_string(&e.kind).unwrap();
            format!("{{\"at\":{},\"kind\":{kind}}}\n", at.as_nanos())
        })
        .collect();
    assert!(objects.len() > 2 * short.len(), "{objects} against {short}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE sagas SET history = ?1 WHERE id = ?2",
        [&objects, &first.to_string()],
    )
    .unwrap();
    conn.pragma_update(None, "user_version", 7).unwrap();
    drop(conn);
    assert_eq!(history(&read_only(), first).await, written);

    let second = Durable::on(&engine(&path, &script))
        .run(Trail::default())
        .await
        .unwrap()
        .id();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, saga_runtime::store::SCHEMA_VERSION);
    assert_eq!(
        in_row(first),
        objects,
        "the old entries are left as they were"
    );
    assert!(in_row(second).lines().all(|l| l.starts_with('[')));
    let store = read_only();
    assert_eq!(history(&store, first).await, written);
    let again = history(&store, second).await;
    let kinds = |h: &[saga_runtime::SagaEvent]| -> Vec<String> {
        h.iter()
            .map(|e| serde_json::to_string(&e.kind).unwrap())
            .map(|k| k.split(',').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds(&again), kinds(&written));
    assert_eq!(store.list(SagaQuery::new()).await.unwrap().len(), 2);
}
