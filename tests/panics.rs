//! A panic in a step is caught and treated as a permanent failure of that step, never as a
//! crash of the saga; a panicking compensation is a failed compensation.

use std::sync::Arc;

use saga_runtime::{saga, saga_step, ErrorKind, RollbackCause, SagaOutcome, SagaStatus};
use saga_tests::{engine, scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(compensate = undo_first, compensation_retries = 3, backoff = "0s")]
    first
);
scripted!(undo_first as "undo:first");
scripted!(
    #[saga_step(retries = 5, backoff = "0s")]
    explosive
);

saga! { Explosive(Trail, Script) { first, explosive } }

#[tokio::test(start_paused = true)]
async fn a_panicking_step_fails_permanently_and_the_saga_compensates() {
    let script = Arc::new(Script::new().plan("explosive", [Plan::Panic("index out of bounds")]));
    let engine = engine();
    let outcome = Explosive::on(&engine)
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(
        script.keys(),
        ["first", "explosive", "undo:first"],
        "a panic is not retried"
    );
    let SagaOutcome::Compensated {
        id,
        cause: RollbackCause::StepFailed { step, error },
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(step, ExplosiveStep::Explosive);
    assert_eq!(error.kind(), ErrorKind::Panic);
    assert_eq!(error.message(), "step panicked: index out of bounds");
    assert_eq!(
        Explosive::on(&engine).status(id).await.unwrap(),
        SagaStatus::Compensated
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_compensation_is_a_failed_compensation() {
    let script = Arc::new(
        Script::new()
            .plan("explosive", [Plan::Permanent("no")])
            .plan("undo:first", [Plan::Panic("undo exploded")]),
    );
    let outcome = Explosive::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    let SagaOutcome::CompensationFailed {
        failures, cause, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(failures[0].error.message(), "step panicked: undo exploded");
    assert_eq!(
        script.calls_of("undo:first").len(),
        1,
        "a panic is permanent: not retried"
    );
    assert!(matches!(cause, RollbackCause::StepFailed { error, .. } if error.message() == "no"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_background_saga_does_not_take_down_the_engine() {
    let script = Arc::new(Script::new().plan("explosive", [Plan::Panic("boom")]));
    let engine = engine();
    let client = Explosive::on(&engine);
    let id = client
        .start_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(matches!(
        client.wait(id).await.unwrap(),
        SagaOutcome::Compensated { .. }
    ));
    // The engine still runs sagas.
    let ok = client
        .run_with(Trail::default(), Arc::new(Script::new()))
        .await
        .unwrap();
    assert!(ok.is_completed());
}
