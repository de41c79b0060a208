//! Forward recovery: a step that fails for good runs its fallback; if the fallback completes,
//! the step counts as completed and the fallback's compensation is the one used later.

use std::sync::Arc;

use saga_runtime::{saga, saga_step, RollbackCause, SagaEventKind, SagaOutcome};
use saga_tests::{engine, scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(compensate = cancel_flight, fallback = book_cheap_flight, retries = 1, backoff = "0s")]
    book_flight
);
scripted!(cancel_flight as "undo:book_flight");
scripted!(
    #[saga_step(compensate = cancel_cheap_flight, retries = 2, backoff = "0s")]
    book_cheap_flight
);
scripted!(cancel_cheap_flight as "undo:book_cheap_flight");
scripted!(
    #[saga_step]
    book_hotel
);

saga! { Trip(Trail, Script) { book_flight, book_hotel } }

#[tokio::test(start_paused = true)]
async fn the_fallback_stands_in_for_a_step_that_failed_for_good() {
    let script = Arc::new(
        Script::new()
            .plan(
                "book_flight",
                [Plan::Transient("full"), Plan::Permanent("sold out")],
            )
            .plan("book_cheap_flight", [Plan::Transient("busy")]),
    );
    let engine = engine();
    let outcome = Trip::on(&engine)
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        script.keys(),
        [
            "book_flight",
            "book_flight",
            "book_cheap_flight",
            "book_cheap_flight",
            "book_hotel"
        ],
        "the fallback has its own retries"
    );
    assert_eq!(outcome.ctx().entries, ["book_cheap_flight", "book_hotel"]);
    let history = Trip::on(&engine).history(outcome.id()).await.unwrap();
    assert!(history.iter().any(|e| matches!(
        &e.kind,
        SagaEventKind::FallbackStarted { step, fallback } if step == "book_flight" && fallback == "book_cheap_flight"
    )));
}

#[tokio::test(start_paused = true)]
async fn the_fallbacks_compensation_undoes_it() {
    let script = Arc::new(
        Script::new()
            .plan("book_flight", [Plan::Permanent("sold out")])
            .plan("book_hotel", [Plan::Permanent("no rooms")]),
    );
    let outcome = Trip::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(
        script.keys(),
        [
            "book_flight",
            "book_cheap_flight",
            "book_hotel",
            "undo:book_cheap_flight"
        ]
    );
    let idempotency_keys: Vec<_> = script
        .calls()
        .iter()
        .map(|c| c.idempotency_key.rsplit(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        idempotency_keys[1], "book_cheap_flight",
        "the fallback has its own key"
    );
    assert!(matches!(
        outcome,
        SagaOutcome::Compensated {
            cause: RollbackCause::StepFailed {
                step: TripStep::BookHotel,
                ..
            },
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_failed_fallback_rolls_back_keeping_the_steps_own_error() {
    let script = Arc::new(
        Script::new()
            .plan("book_flight", [Plan::Permanent("sold out")])
            .plan("book_cheap_flight", [Plan::Permanent("also sold out")]),
    );
    let outcome = Trip::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(script.keys(), ["book_flight", "book_cheap_flight"]);
    let SagaOutcome::Compensated {
        cause: RollbackCause::StepFailed { step, error },
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(step, TripStep::BookFlight);
    assert_eq!(error.message(), "sold out");
}
