//! A PostgreSQL restart costs time, never data: sagas whose steps run while the server restarts
//! (in immediate mode, as after a crash) wait for it, reconnect with backoff, record their steps
//! once it is back, and complete, each step run once. Its own test binary, so that the restart
//! never disturbs other tests. Skipped, saying so, without `SAGA_POSTGRES_URL`.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::store::PostgresStore;
use saga_runtime::{saga, saga_step, Engine, SagaEventKind};
use saga_tests::{
    fresh_schema, postgres_sql, postgres_url, restart_postgres, scripted, Plan, Script, Trail,
};

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

saga! { ThroughRestart(Trail, Script) { a, b, c } }

const SAGAS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_costs_time_never_data() {
    let Some(url) = postgres_url("the PostgreSQL restart test") else {
        return;
    };
    let schema = fresh_schema("restart");
    let store = PostgresStore::options(&url)
        .schema(&schema)
        .connect()
        .await
        .unwrap();
    // Every saga's `b` is running when the server goes down.
    let script = Arc::new(Script::new().plan(
        "b",
        (0..SAGAS).map(|_| Plan::Sleep(Duration::from_millis(1_500))),
    ));
    let engine = Engine::builder()
        .store(store)
        .register::<ThroughRestart>(script.clone())
        .build();
    let client = ThroughRestart::on(&engine);
    let mut ids = Vec::new();
    for _ in 0..SAGAS {
        ids.push(
            client
                .start_with(Trail::default(), script.clone())
                .await
                .unwrap(),
        );
    }
    while script.calls_of("b").len() < SAGAS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();
    for &id in &ids {
        let outcome = tokio::time::timeout(Duration::from_secs(60), client.wait(id))
            .await
            .expect("ended within a minute of the restart")
            .unwrap();
        assert_eq!(outcome.ctx().entries, ["a", "b", "c"], "{outcome:?}");
        let history = client.history(id).await.unwrap();
        assert_eq!(
            history.len(),
            8,
            "each transition recorded once: {history:?}"
        );
        assert!(matches!(
            history.last().unwrap().kind,
            SagaEventKind::SagaCompleted { .. }
        ));
    }
    for key in ["a", "b", "c"] {
        assert_eq!(
            script.calls_of(key).len(),
            SAGAS,
            "each saga ran `{key}` once"
        );
    }
    assert_eq!(engine.fenced_writes(), 0);
    assert_eq!(engine.lost_leases(), 0);
    postgres_sql(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
}
