//! Cancellation and the whole-saga deadline: the saga stops at the next step boundary (or cuts a
//! retry wait short) and compensates like a failure; past the pivot it cannot be cancelled.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{saga, saga_step, RollbackReason, SagaError, SagaEventKind, SagaStatus};
use saga_tests::{engine, scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(compensate = undo_a)]
    a
);
scripted!(undo_a as "undo:a");
scripted!(
    #[saga_step(compensate = undo_b, retries = 3, backoff = "10s")]
    b
);
scripted!(undo_b as "undo:b");
scripted!(
    #[saga_step(pivot)]
    p
);
scripted!(
    #[saga_step]
    c
);

saga! { Cancellable(Trail, Script) { a, b, c } }
saga! { PastPivot(Trail, Script) { a, p, b, c } }
saga! {
    #[saga(deadline = "5s")]
    Deadline(Trail, Script) { a, b, c }
}

/// Waits until the saga emits an event matching `pred`.
async fn until(
    events: &mut tokio::sync::broadcast::Receiver<saga_runtime::SagaEvent>,
    pred: impl Fn(&SagaEventKind) -> bool,
) {
    loop {
        let event = events.recv().await.unwrap();
        if pred(&event.kind) {
            return;
        }
    }
}

fn started(step: &'static str) -> impl Fn(&SagaEventKind) -> bool {
    move |k| matches!(k, SagaEventKind::StepStarted { step: s, .. } if s == step)
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_at_the_next_step_boundary_and_compensates() {
    let script = Arc::new(Script::new().plan("b", [Plan::Sleep(Duration::from_secs(3))]));
    let engine = engine();
    let client = Cancellable::on(&engine);
    let mut events = engine.subscribe();
    let id = client
        .start_with(Trail::default(), script.clone())
        .await
        .unwrap();
    until(&mut events, started("b")).await;
    client.cancel(id).unwrap();

    assert_eq!(client.wait(id).await.unwrap(), SagaStatus::Compensated);
    assert_eq!(
        script.keys(),
        ["a", "b", "undo:b", "undo:a"],
        "b ran to its end (a boundary), c never started"
    );
    let history = client.history(id).await.unwrap();
    assert!(history.iter().any(|e| matches!(
        e.kind,
        SagaEventKind::CompensationStarted {
            reason: RollbackReason::Cancelled
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn cancelling_cuts_a_retry_wait_short() {
    let script = Arc::new(Script::new().plan("b", [Plan::Transient("busy")]));
    let engine = engine();
    let client = Cancellable::on(&engine);
    let mut events = engine.subscribe();
    let start = tokio::time::Instant::now();
    let id = client
        .start_with(Trail::default(), script.clone())
        .await
        .unwrap();
    until(&mut events, |k| {
        matches!(k, SagaEventKind::RetryScheduled { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.cancel(id).unwrap();

    assert_eq!(client.wait(id).await.unwrap(), SagaStatus::Compensated);
    assert_eq!(
        script.keys(),
        ["a", "b", "undo:a"],
        "b never completed: not compensated"
    );
    assert_eq!(
        tokio::time::Instant::now() - start,
        Duration::from_secs(1),
        "no 10 s wait"
    );
}

#[tokio::test(start_paused = true)]
async fn a_saga_past_its_pivot_cannot_be_cancelled() {
    let script = Arc::new(Script::new().plan("b", [Plan::Sleep(Duration::from_secs(3))]));
    let engine = engine();
    let client = PastPivot::on(&engine);
    let mut events = engine.subscribe();
    let id = client
        .start_with(Trail::default(), script.clone())
        .await
        .unwrap();
    until(&mut events, started("b")).await;
    let refused = client.cancel(id);
    assert!(
        matches!(&refused, Err(SagaError::NotCancellable { reason, .. }) if reason.contains("pivot")),
        "{refused:?}"
    );
    assert_eq!(client.wait(id).await.unwrap(), SagaStatus::Completed);
    assert_eq!(script.keys(), ["a", "p", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_saga_that_is_not_running_is_refused() {
    let engine = engine();
    let client = Cancellable::on(&engine);
    let outcome = client
        .run_with(Trail::default(), Arc::new(Script::new()))
        .await
        .unwrap();
    let refused = client.cancel(outcome.id());
    assert!(
        matches!(refused, Err(SagaError::NotCancellable { .. })),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn past_the_deadline_the_saga_compensates() {
    // Each step takes 3 s; the deadline of 5 s passes during b.
    let script = Arc::new(
        Script::new()
            .plan("a", [Plan::Sleep(Duration::from_secs(3))])
            .plan("b", [Plan::Sleep(Duration::from_secs(3))]),
    );
    let engine = engine();
    let outcome = Deadline::on(&engine)
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(script.keys(), ["a", "b", "undo:b", "undo:a"]);
    assert!(
        matches!(
            outcome.cause(),
            Some(saga_runtime::RollbackCause::DeadlineExceeded)
        ),
        "{outcome:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_deadline_overrides_the_declared_one_and_cuts_waits_short() {
    let script = Arc::new(Script::new().plan("b", [Plan::Transient("busy")]));
    let engine = engine();
    let start = tokio::time::Instant::now();
    let outcome = Deadline::on(&engine)
        .request(Trail::default())
        .deps(script.clone())
        .deadline(Duration::from_secs(2))
        .run()
        .await
        .unwrap();
    assert_eq!(script.keys(), ["a", "b", "undo:a"]);
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(2));
    assert!(matches!(
        outcome.cause(),
        Some(saga_runtime::RollbackCause::DeadlineExceeded)
    ));
}
