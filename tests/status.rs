//! `start`, `status` and `wait`: statuses only move forward; explicit ids and idempotency keys
//! never create a duplicate; lookups of unknown or foreign sagas give clear errors.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{saga, saga_step, SagaError, SagaId, SagaStatus, StepCx};
use saga_tests::{engine, scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(compensate = undo_a)]
    a
);
scripted!(undo_a as "undo:a");
scripted!(
    #[saga_step]
    b
);

saga! { Tracked(Trail, Script) { a, b } }
saga! { Other(Trail, Script) { a, b } }

/// Polls the status every 100 ms (tokio's clock) until terminal; returns each distinct status.
async fn observe(
    client: saga_runtime::SagaClient<Tracked>,
    id: SagaId,
) -> Vec<SagaStatus<TrackedStep>> {
    let mut seen: Vec<SagaStatus<TrackedStep>> = Vec::new();
    loop {
        let status = client.status(id).await.unwrap();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status.is_terminal() {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn statuses_move_forward_through_the_steps() {
    let script = Arc::new(
        Script::new()
            .plan("a", [Plan::Sleep(Duration::from_secs(1))])
            .plan("b", [Plan::Sleep(Duration::from_secs(1))]),
    );
    let engine = engine();
    let client = Tracked::on(&engine);
    let id = client.start_with(Trail::default(), script).await.unwrap();
    // Recorded with its first step's intent: running at once, never seen pending.
    assert_eq!(
        observe(client, id).await,
        [
            SagaStatus::Running {
                step: TrackedStep::A
            },
            SagaStatus::Running {
                step: TrackedStep::B
            },
            SagaStatus::Completed,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn statuses_move_forward_through_compensation() {
    let script = Arc::new(
        Script::new()
            .plan("b", [Plan::SlowTransient(Duration::from_secs(1), "no")])
            .plan("undo:a", [Plan::Sleep(Duration::from_secs(1))]),
    );
    let engine = engine();
    let client = Tracked::on(&engine);
    let id = client.start_with(Trail::default(), script).await.unwrap();
    assert_eq!(
        observe(client, id).await,
        [
            SagaStatus::Running {
                step: TrackedStep::B
            },
            SagaStatus::Compensating {
                step: TrackedStep::A
            },
            SagaStatus::Compensated,
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_explicit_id_or_key_returns_the_existing_saga() {
    let engine = engine();
    let client = Tracked::on(&engine);
    let script = Arc::new(Script::new());
    let id = SagaId::new();
    let first = client
        .request(Trail::default())
        .deps(script.clone())
        .id(id)
        .start()
        .await
        .unwrap();
    let second = client
        .request(Trail::default())
        .deps(script.clone())
        .id(id)
        .start()
        .await
        .unwrap();
    assert_eq!((first, second), (id, id));

    let k1 = client
        .request(Trail::default())
        .deps(script.clone())
        .idempotency_key("order-7");
    let k1 = k1.start().await.unwrap();
    let k2 = client
        .request(Trail::default())
        .deps(script.clone())
        .idempotency_key("order-7");
    let k2 = k2.start().await.unwrap();
    assert_eq!(k1, k2);

    assert!(client.wait(id).await.unwrap().is_completed());
    assert!(client.wait(k1).await.unwrap().is_completed());
    assert_eq!(script.keys(), ["a", "b", "a", "b"], "each saga ran once");

    let rerun = client
        .request(Trail::default())
        .deps(script.clone())
        .id(id)
        .run()
        .await;
    assert!(matches!(rerun, Err(SagaError::AlreadyExists { id: existing }) if existing == id));
    let rerun = client
        .request(Trail::default())
        .deps(script.clone())
        .idempotency_key("order-7")
        .run()
        .await;
    assert!(matches!(rerun, Err(SagaError::AlreadyExists { id: existing }) if existing == k1));
    assert_eq!(script.keys().len(), 4, "the refused runs ran nothing");
}

#[tokio::test(start_paused = true)]
async fn in_memory_a_key_is_kept_however_many_sagas_end_after_it() {
    let engine = saga_runtime::Engine::builder()
        .store(saga_runtime::store::MemoryStore::with_retention(2))
        .build();
    let client = Tracked::on(&engine);
    let script = Arc::new(Script::new());
    let keyed = client
        .request(Trail::default())
        .deps(script.clone())
        .idempotency_key("order-1")
        .run()
        .await
        .unwrap();
    let mut keyless = Vec::new();
    for _ in 0..5 {
        let outcome = client
            .run_with(Trail::default(), script.clone())
            .await
            .unwrap();
        keyless.push(outcome.id());
    }
    assert!(
        matches!(client.status(keyless[0]).await, Err(SagaError::NotFound(_))),
        "ended sagas without a key beyond the retention are forgotten"
    );
    assert_eq!(
        client.status(keyed.id()).await.unwrap(),
        SagaStatus::Completed
    );
    let again = client
        .request(Trail::default())
        .deps(script.clone())
        .idempotency_key("order-1")
        .start()
        .await
        .unwrap();
    assert_eq!(again, keyed.id(), "the key still names the first saga");
    assert_eq!(
        script.keys().iter().filter(|k| *k == "a").count(),
        6,
        "it did not run again"
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_and_foreign_ids_are_clear_errors() {
    let engine = engine();
    let unknown = SagaId::new();
    let err = Tracked::on(&engine).status(unknown).await.unwrap_err();
    assert_eq!(err.to_string(), format!("no saga with id {unknown}"));

    let outcome = Other::on(&engine)
        .run_with(Trail::default(), Arc::new(Script::new()))
        .await
        .unwrap();
    let err = Tracked::on(&engine).status(outcome.id()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("saga {} is a `Other`, not a `Tracked`", outcome.id())
    );
}

/// Dependencies with no `Default`: a run must be given them.
struct Gateway {
    name: &'static str,
}

#[saga_step]
async fn charge(ctx: &mut Trail, cx: &StepCx<Gateway>) -> Result<(), saga_runtime::StepError> {
    ctx.push(cx.deps().name);
    Ok(())
}

saga! { Billing(Trail, Gateway) { charge } }

#[tokio::test(start_paused = true)]
async fn missing_dependencies_are_a_clear_error() {
    let err = Billing::on(&engine())
        .request(Trail::default())
        .run()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        SagaError::MissingDeps {
            saga_type: "Billing"
        }
    ));
    assert!(err.to_string().contains("run_with"), "{err}");
    let outcome = Billing::on(&engine())
        .request(Trail::default())
        .deps(Gateway { name: "stripe" })
        .run()
        .await
        .unwrap();
    assert_eq!(outcome.ctx().entries, ["stripe"]);
}

#[tokio::test(start_paused = true)]
async fn dependencies_that_are_default_need_not_be_given() {
    // `()`, as the docs promise: deps are required only when they are not `Default`.
    let outcome = NoDeps::on(&engine())
        .request(Trail::default())
        .id(SagaId::new())
        .run()
        .await
        .unwrap();
    assert_eq!(outcome.ctx().entries, ["unit"]);
    // Any `Default` type: the script's default plays every step as a success.
    let outcome = Tracked::on(&engine())
        .request(Trail::default())
        .run()
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(outcome.ctx().entries, ["a", "b"]);
}

#[saga_step]
async fn unit(ctx: &mut Trail) -> Result<(), saga_runtime::StepError> {
    ctx.push("unit");
    Ok(())
}

saga! { NoDeps(Trail) { unit } }

#[tokio::test]
async fn the_global_engine_runs_and_tracks_sagas_with_zero_setup() {
    let outcome = NoDeps::run(Trail::default()).await.unwrap();
    assert_eq!(outcome.ctx().entries, ["unit"]);
    let id = NoDeps::start(Trail::default()).await.unwrap();
    assert!(NoDeps::wait(id).await.unwrap().is_completed());
    assert_eq!(NoDeps::status(id).await.unwrap(), SagaStatus::Completed);
}

#[tokio::test]
async fn engines_builders_clients_and_requests_are_debug() {
    let builder = saga_runtime::Engine::builder()
        .worker_id("billing")
        .register::<Tracked>(Arc::new(Script::new()));
    let printed = format!("{builder:?}");
    assert!(printed.starts_with("EngineBuilder"), "{printed}");
    assert!(
        printed.contains("\"Tracked\"") && printed.contains("billing"),
        "{printed}"
    );
    let engine = builder.build();
    let printed = format!("{engine:?}");
    assert!(
        printed.contains("billing#") && printed.contains("\"Tracked\""),
        "{printed}"
    );
    let client = Tracked::on(&engine);
    assert!(format!("{client:?}").contains("\"Tracked\""));
    let request = client.request(Trail::default()).idempotency_key("order-7");
    let printed = format!("{request:?}");
    assert!(
        printed.contains("\"order-7\"") && printed.contains("\"Tracked\""),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_into_a_spawned_task() {
    let engine = engine();
    let client = Tracked::on(&engine);
    let task = tokio::spawn(async move {
        client
            .run_with(Trail::default(), Arc::new(Script::new()))
            .await
    });
    // The client holds the engine: nothing borrowed outlives this scope.
    drop(engine);
    let outcome = task.await.unwrap().unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
}
