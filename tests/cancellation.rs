//! Cancellation and the whole-saga deadline: the saga stops at the next step boundary (or cuts a
//! retry wait short) and compensates like a failure; past the pivot, inside it or in the last
//! step it cannot be cancelled, and the refusal says why.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{
    saga, saga_step, Engine, OperatorRequest, Refusal, Saga, SagaError, SagaEventKind, SagaId,
    SagaOutcome,
};
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
saga! {
    #[saga(deadline = "5s")]
    DeadlinePastPivot(Trail, Script) { a, p, b, c }
}

/// The `StopIgnored` events of a history: (cancelled, reason).
fn ignored(history: &[saga_runtime::SagaEvent]) -> Vec<(bool, String)> {
    history
        .iter()
        .filter_map(|e| match &e.kind {
            SagaEventKind::StopIgnored { cancelled, reason } => Some((*cancelled, reason.clone())),
            _ => None,
        })
        .collect()
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

/// Starts a saga of type `S` with `script` and returns its id once `step` has started.
async fn start_until_started<S>(engine: &Engine, script: &Arc<Script>, step: &'static str) -> SagaId
where
    S: Saga<Context = Trail, Deps = Script>,
{
    let mut events = engine.subscribe();
    let id = engine
        .saga::<S>()
        .start_with(Trail::default(), script.clone())
        .await
        .unwrap();
    until(&mut events, started(step)).await;
    id
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_at_the_next_step_boundary_and_compensates() {
    let script = Arc::new(Script::new().plan("b", [Plan::Sleep(Duration::from_secs(3))]));
    let engine = engine();
    let client = Cancellable::on(&engine);
    let id = start_until_started::<Cancellable>(&engine, &script, "b").await;
    client.cancel(id).await.unwrap();

    assert!(matches!(
        client.wait(id).await.unwrap(),
        SagaOutcome::Compensated { .. }
    ));
    assert_eq!(
        script.keys(),
        ["a", "b", "undo:b", "undo:a"],
        "b ran to its end (a boundary), c never started"
    );
    let history = client.history(id).await.unwrap();
    assert!(history.iter().any(|e| matches!(
        e.kind,
        SagaEventKind::CompensationStarted {
            reason: saga_runtime::RollbackCause::Cancelled
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
    client.cancel(id).await.unwrap();

    assert!(matches!(
        client.wait(id).await.unwrap(),
        SagaOutcome::Compensated { .. }
    ));
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
    let id = start_until_started::<PastPivot>(&engine, &script, "b").await;
    let refused = client.cancel(id).await;
    assert!(
        matches!(
            &refused,
            Err(SagaError::Refused {
                refusal: Refusal::PastPivot,
                request: OperatorRequest::Cancel,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("has passed its pivot step"),
        "the message says why"
    );
    assert!(client.wait(id).await.unwrap().is_completed());
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
    let refused = client.cancel(outcome.id()).await;
    assert!(
        matches!(&refused, Err(SagaError::Refused { refusal: Refusal::Finished { status }, .. }) if status == "completed"),
        "{refused:?}"
    );
    let unknown = client.cancel(SagaId::new()).await;
    assert!(
        matches!(unknown, Err(SagaError::NotFound(_))),
        "{unknown:?}"
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

#[tokio::test(start_paused = true)]
async fn a_cancel_while_the_pivot_runs_is_refused() {
    let script = Arc::new(Script::new().plan("p", [Plan::Sleep(Duration::from_secs(3))]));
    let engine = engine();
    let client = PastPivot::on(&engine);
    let id = start_until_started::<PastPivot>(&engine, &script, "p").await;
    // The pivot decides: completed, the saga cannot roll back; failed, it rolls back anyway.
    let refused = client.cancel(id).await;
    assert!(
        matches!(
            &refused,
            Err(SagaError::Refused {
                refusal: Refusal::InsidePivot,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(client.wait(id).await.unwrap().is_completed());
    assert_eq!(script.keys(), ["a", "p", "b", "c"], "nothing compensated");
    let history = client.history(id).await.unwrap();
    assert!(
        ignored(&history).is_empty(),
        "nothing to record: it was refused"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancel_while_the_last_step_runs_is_refused() {
    let script = Arc::new(Script::new().plan("c", [Plan::Sleep(Duration::from_secs(3))]));
    let engine = engine();
    let client = Cancellable::on(&engine);
    let id = start_until_started::<Cancellable>(&engine, &script, "c").await;
    let refused = client.cancel(id).await;
    assert!(
        matches!(
            &refused,
            Err(SagaError::Refused {
                refusal: Refusal::LastStep,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(client.wait(id).await.unwrap().is_completed());
    assert_eq!(script.keys(), ["a", "b", "c"]);
    let history = client.history(id).await.unwrap();
    let last = &history.last().unwrap().kind;
    assert!(
        matches!(last, SagaEventKind::SagaCompleted { .. }),
        "{last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_passing_while_the_pivot_runs_is_recorded_as_ignored() {
    let script = Arc::new(Script::new().plan("p", [Plan::Sleep(Duration::from_secs(10))]));
    let engine = engine();
    let client = DeadlinePastPivot::on(&engine);
    let outcome = client
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(script.keys(), ["a", "p", "b", "c"]);
    let history = client.history(outcome.id()).await.unwrap();
    assert_eq!(
        ignored(&history),
        [(
            false,
            "the saga had passed its pivot step and can no longer be rolled back".to_owned()
        )]
    );
}
