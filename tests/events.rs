//! Events: one per transition, in order, to subscribers, to the history and to `tracing` inside
//! a span per saga carrying its id and type.

use std::sync::Arc;

use saga_runtime::{saga, saga_step, Phase, SagaEvent, SagaEventKind};
use saga_tests::{engine, scripted, Plan, Script, Trail};

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

saga! { Evented(Trail, Script) { a, b, c } }

/// A compact form of an event: `kind:step[:attempt]`.
fn brief(event: &SagaEvent) -> String {
    match &event.kind {
        SagaEventKind::SagaStarted { steps } => format!("saga_started:{}", steps.join(",")),
        SagaEventKind::StepStarted {
            step,
            phase: Phase::Action,
            attempt,
        } => {
            format!("step_started:{step}:{attempt}")
        }
        SagaEventKind::StepStarted {
            step,
            phase: Phase::Compensation,
            attempt,
        } => {
            format!("compensation_attempt:{step}:{attempt}")
        }
        SagaEventKind::RetryScheduled { step, attempt, .. } => {
            format!("retry_scheduled:{step}:{attempt}")
        }
        SagaEventKind::StepCompleted { step, attempt, .. } => {
            format!("step_completed:{step}:{attempt}")
        }
        SagaEventKind::StepFailed { step, attempt, .. } => format!("step_failed:{step}:{attempt}"),
        SagaEventKind::CompensationStarted { .. } => "compensation_started".into(),
        SagaEventKind::StepCompensated { step, .. } => format!("step_compensated:{step}"),
        SagaEventKind::CompensationFailed { step, .. } => format!("compensation_failed:{step}"),
        SagaEventKind::SagaCompleted { .. } => "saga_completed".into(),
        SagaEventKind::SagaCompensated { .. } => "saga_compensated".into(),
        SagaEventKind::SagaFailed { step, .. } => format!("saga_failed:{step}"),
        other => format!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_completed_saga_emits_each_transition_in_order() {
    let engine = engine();
    let mut events = engine.subscribe();
    let script = Arc::new(Script::new().plan("b", [Plan::Transient("flaky")]));
    let outcome = Evented::on(&engine)
        .run_with(Trail::default(), script)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        assert_eq!(event.saga_id, outcome.id());
        assert_eq!(event.saga_type, "Evented");
        seen.push(brief(&event));
    }
    assert_eq!(
        seen,
        [
            "saga_started:a,b,c",
            "step_started:a:1",
            "step_completed:a:1",
            "step_started:b:1",
            "retry_scheduled:b:1",
            "step_started:b:2",
            "step_completed:b:2",
            "step_started:c:1",
            "step_completed:c:1",
            "saga_completed",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn on_failure_events_come_as_step_failed_compensation_started_compensated_saga_compensated() {
    let engine = engine();
    let mut events = engine.subscribe();
    let script = Arc::new(Script::new().plan("c", [Plan::Permanent("no")]));
    let outcome = Evented::on(&engine)
        .run_with(Trail::default(), script)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    let briefs: Vec<_> = seen.iter().map(brief).collect();
    assert_eq!(
        briefs[5..],
        [
            "step_started:c:1",
            "step_failed:c:1",
            "compensation_started",
            "compensation_attempt:b:1",
            "step_compensated:b",
            "compensation_attempt:a:1",
            "step_compensated:a",
            "saga_compensated",
        ]
    );
    // The history in the store is the same sequence.
    let history = Evented::on(&engine).history(outcome.id()).await.unwrap();
    assert_eq!(history, seen);
}
