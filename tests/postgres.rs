//! The PostgreSQL store through the engine: a saga run by one engine is read back, outcome and
//! final context, by another on the same database; an operator's cancel from the other engine
//! reaches it; a saga enqueued by a client is taken by a worker on notification; starts with one
//! idempotency key from four processes make one saga; a durable timer set by one worker is fired
//! by another; a schema written by a newer version of the library is refused before anything is
//! written. Skipped, saying so, without
//! `SAGA_POSTGRES_URL`.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::store::{PostgresStore, SagaStore, StoreErrorKind, POSTGRES_SCHEMA_VERSION};
use saga_runtime::{saga, saga_step, Engine, RollbackCause, SagaOutcome};
use saga_tests::{fresh_schema, postgres_sql, postgres_url, scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(compensate = undo_a)]
    a
);
scripted!(undo_a as "undo:a");
scripted!(
    #[saga_step(compensate = undo_b)]
    b
);
scripted!(undo_b as "undo:b");
scripted!(
    #[saga_step]
    c
);

saga! { OnPostgres(Trail, Script) { a, b, c } }

async fn store(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::options(url)
        .schema(schema)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_run_by_one_engine_is_read_and_cancelled_by_another() {
    let Some(url) = postgres_url("this PostgreSQL test") else {
        return;
    };
    let schema = fresh_schema("engine");
    let script =
        Arc::new(Script::new().plan("b", [Plan::Ok, Plan::Sleep(Duration::from_millis(1_500))]));
    let runner = Engine::builder()
        .store(store(&url, &schema).await)
        .renew_interval(Duration::from_millis(100))
        .register::<OnPostgres>(script.clone())
        .build();
    let operator = Engine::builder()
        .store(store(&url, &schema).await)
        .claims(false)
        .build();

    let done = OnPostgres::on(&runner)
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(done.is_completed());
    let read = OnPostgres::on(&operator).wait(done.id()).await.unwrap();
    assert_eq!(read.ctx().entries, ["a", "b", "c"], "the final context");
    assert_eq!(
        OnPostgres::on(&operator)
            .history(done.id())
            .await
            .unwrap()
            .len(),
        8,
        "started, 3 x (step started, step completed), completed"
    );

    // The runner starts another; the operator cancels it while `b` sleeps.
    let id = OnPostgres::on(&runner)
        .start_with(Trail::default(), script.clone())
        .await
        .unwrap();
    while script.keys().iter().filter(|k| *k == "b").count() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    operator.cancel(id).await.expect("accepted while b runs");
    let outcome = OnPostgres::on(&operator).wait(id).await.unwrap();
    assert!(
        matches!(
            &outcome,
            SagaOutcome::Compensated {
                cause: RollbackCause::Cancelled,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(outcome.ctx().entries, ["a", "b", "undo:b", "undo:a"]);
    postgres_sql(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_before_anything_is_written() {
    let Some(url) = postgres_url("this PostgreSQL test") else {
        return;
    };
    let schema = fresh_schema("engine");
    drop(store(&url, &schema).await);
    postgres_sql(
        &url,
        &format!(
            "UPDATE {schema}.saga_schema SET version = {};",
            POSTGRES_SCHEMA_VERSION + 1
        ),
    )
    .await;
    let refused = PostgresStore::options(&url)
        .schema(&schema)
        .connect()
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Corrupt);
    assert!(
        refused.to_string().contains("newer than this library's"),
        "{refused}"
    );
    postgres_sql(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

/// A store that never creates or migrates its schema, as the `saga` tool opens one.
async fn read_only(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::options(url)
        .schema(schema)
        .create(false)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// A version 1 schema (no saga types) is read as it is by a store that does not create (the
/// tool), and brought to version 2 by one that does; engines then record the types they start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_is_read_as_it_is_then_migrated_and_records_types() {
    let Some(url) = postgres_url("this PostgreSQL test") else {
        return;
    };
    let schema = fresh_schema("types");
    drop(store(&url, &schema).await);
    postgres_sql(
        &url,
        &format!("DROP TABLE {schema}.saga_types; UPDATE {schema}.saga_schema SET version = 1;"),
    )
    .await;
    let reader = read_only(&url, &schema).await;
    assert_eq!(reader.saga_types().await.unwrap(), []);
    assert_eq!(reader.counts().await.unwrap(), []);

    let script = Arc::new(Script::new());
    let engine = Engine::builder()
        .store(store(&url, &schema).await)
        .register::<OnPostgres>(script.clone())
        .build();
    let outcome = OnPostgres::on(&engine).run(Trail::default()).await.unwrap();
    assert!(outcome.is_completed());
    let reader = read_only(&url, &schema).await;
    let types = reader.saga_types().await.unwrap();
    assert_eq!(types.len(), 1, "{types:?}");
    assert_eq!(types[0].name, "OnPostgres");
    assert_eq!(types[0].step_names(), ["a", "b", "c"]);
    postgres_sql(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

/// A saga enqueued by an engine that runs nothing is taken by a worker engine on its own store
/// (connection pool and listener) at once, on the store's notification: the worker looks for work
/// only every 30 s otherwise. The worker, not the client, runs the steps; the client reads the
/// outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueued_saga_is_taken_by_a_worker_on_notification() {
    let Some(url) = postgres_url("this PostgreSQL test") else {
        return;
    };
    let schema = fresh_schema("enqueue");
    let script = Arc::new(Script::new());
    let worker = Engine::builder()
        .store(store(&url, &schema).await)
        .renew_interval(Duration::from_secs(30))
        .lease(Duration::from_secs(90))
        .register::<OnPostgres>(script.clone())
        .build();
    worker.recover().await.unwrap();
    let client = Engine::builder()
        .store(store(&url, &schema).await)
        .claims(false)
        .build();
    // The worker's listener subscribes in the background; a saga enqueued before it did would
    // be found by the hint it gives once subscribed, so the test needs no wait for it.
    for round in 0..3 {
        let enqueued = std::time::Instant::now();
        let id = OnPostgres::on(&client)
            .request(Trail::default())
            .enqueue()
            .await
            .unwrap();
        let outcome = OnPostgres::on(&client).wait(id).await.unwrap();
        let took = enqueued.elapsed();
        assert!(outcome.is_completed(), "{outcome:?}");
        assert_eq!(outcome.ctx().entries, ["a", "b", "c"]);
        assert!(
            took < Duration::from_secs(10),
            "round {round}: the saga was taken after {took:?}: only the notification, not the \
             worker's 30 s look, could have taken it sooner"
        );
        eprintln!("round {round}: enqueued to completed in {took:?}");
    }
    assert_eq!(
        script.keys(),
        ["a", "b", "c", "a", "b", "c", "a", "b", "c"],
        "the worker ran every step once (the client has no script to run them with)"
    );
    postgres_sql(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

#[path = "crash_checks.rs"]
mod checks;

/// Four processes start the same 200 keyed sagas at the same moment: each key makes one saga,
/// every process is told its id, and its steps run once (the effects ledger).
#[test]
fn starts_with_one_key_from_four_processes_make_one_saga() {
    let Some(url) = postgres_url("this PostgreSQL test") else {
        return;
    };
    const COUNT: usize = 200;
    let files = checks::files_on_postgres(&url, "keyed");
    // The schema first, so that the four do not all wait on its creation.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (_, schema) = files.postgres.as_ref().unwrap();
        drop(store(&url, schema).await);
    });
    let children: Vec<_> = (0..4)
        .map(|_| {
            checks::worker(&files, &["keyed", &COUNT.to_string()], None)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut told: Vec<std::collections::BTreeMap<usize, String>> = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "a worker failed: {}",
            output.status
        );
        told.push(
            String::from_utf8(output.stdout)
                .unwrap()
                .lines()
                .filter_map(|line| {
                    let mut words = line.strip_prefix("STARTED ")?.split(' ');
                    Some((words.next()?.parse().ok()?, words.next()?.to_owned()))
                })
                .collect(),
        );
    }
    for other in &told[1..] {
        assert_eq!(
            other, &told[0],
            "every process was told the same id for each key"
        );
    }
    assert_eq!(told[0].len(), COUNT);
    let stored = files.stored();
    assert_eq!(stored.len(), COUNT, "one saga per key");
    let (effects, _) = checks::ledger(&files.ledger);
    for id in told[0].values() {
        let saga = &stored[id];
        assert_eq!(saga.status["status"], "completed", "{id}");
        checks::check_consistent(id, saga, &effects[id]);
    }
}

/// Which worker ran which attempt of `retried`.
#[derive(Debug, Default)]
struct Named {
    name: &'static str,
    attempts: Arc<std::sync::Mutex<Vec<(&'static str, u32)>>>,
}

/// Fails at its first attempt; the retry waits 1.5 s, a durable timer.
#[saga_step(retries = 2, backoff = "1500ms", nothing_to_undo)]
async fn retried(
    ctx: &mut Trail,
    cx: &saga_runtime::StepCx<Named>,
) -> Result<(), saga_runtime::StepError> {
    cx.deps()
        .attempts
        .lock()
        .unwrap()
        .push((cx.deps().name, cx.attempt()));
    ctx.push(format!("retried#{}", cx.attempt()));
    match cx.attempt() {
        1 => Err(saga_runtime::StepError::transient("busy")),
        _ => Ok(()),
    }
}

saga! { WaitsOnPostgres(Trail, Named) { retried } }

/// A retry's wait is a wake time in the database: the worker that ran the first attempt lets the
/// saga go (no lease) and goes away; another worker fires the timer when it is due and runs the
/// second attempt, as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_timer_is_fired_by_another_worker() {
    let Some(url) = postgres_url("this PostgreSQL test") else {
        return;
    };
    let schema = fresh_schema("timers");
    let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let worker = |name: &'static str| {
        let (url, schema, attempts) = (url.clone(), schema.clone(), attempts.clone());
        async move {
            Engine::builder()
                .store(store(&url, &schema).await)
                .renew_interval(Duration::from_millis(200))
                .lease(Duration::from_secs(1))
                .timer_threshold(Duration::from_millis(100))
                .backoff(saga_runtime::Backoff {
                    cap: Duration::from_secs(60),
                    jitter: saga_runtime::Jitter::None,
                })
                .register::<WaitsOnPostgres>(Named { name, attempts })
                .build()
        }
    };
    let first = worker("first").await;
    let named = Named {
        name: "first",
        attempts: attempts.clone(),
    };
    let id = WaitsOnPostgres::on(&first)
        .start_with(Trail::default(), named)
        .await
        .unwrap();
    let probe = store(&url, &schema).await;
    let waiting = loop {
        let record = saga_runtime::store::SagaStore::load(&probe, id)
            .await
            .unwrap()
            .unwrap();
        if record.lease.is_none() && record.state.wake_at().is_some() {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    drop(first);
    let second = worker("second").await;
    second.recover().await.unwrap();
    let outcome = WaitsOnPostgres::on(&second).wait(id).await.unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(outcome.ctx().entries, ["retried#2"]);
    assert_eq!(
        *attempts.lock().unwrap(),
        [("first", 1), ("second", 2)],
        "the first attempt in the first worker, the second in the other"
    );
    let fired = WaitsOnPostgres::on(&second)
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| matches!(e.kind, saga_runtime::SagaEventKind::SagaResumed { .. }))
        .expect("taken back after the wait");
    assert!(
        fired.at >= waiting.state.wake_at().unwrap(),
        "not fired before its wake time"
    );
    postgres_sql(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

/// A cancel from another engine reaches the worker that runs the saga at once, on the store's
/// notification, not at its next renewal (30 s here): the step after the one running when the
/// cancel came never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_holder_on_notification() {
    let Some(url) = postgres_url("this PostgreSQL test") else {
        return;
    };
    let schema = fresh_schema("cancel");
    let script = Arc::new(Script::new().plan("b", [Plan::Sleep(Duration::from_millis(1_500))]));
    let runner = Engine::builder()
        .store(store(&url, &schema).await)
        .renew_interval(Duration::from_secs(30))
        .lease(Duration::from_secs(90))
        .register::<OnPostgres>(script.clone())
        .build();
    runner.recover().await.unwrap();
    let operator = Engine::builder()
        .store(store(&url, &schema).await)
        .claims(false)
        .build();
    // The runner's registered script is its default dependencies.
    let id = OnPostgres::on(&runner)
        .start(Trail::default())
        .await
        .unwrap();
    while !script.keys().iter().any(|k| k == "b") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    operator.cancel(id).await.expect("accepted while b runs");
    let outcome = OnPostgres::on(&operator).wait(id).await.unwrap();
    assert!(
        matches!(
            &outcome,
            SagaOutcome::Compensated {
                cause: RollbackCause::Cancelled,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.ctx().entries,
        ["a", "b", "undo:b", "undo:a"],
        "c never ran: the cancel was known when b ended"
    );
    postgres_sql(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
}
