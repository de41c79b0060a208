//! Rollback: reverse order, which steps are skipped, compensation retries, the
//! compensation-failed state, operator retry, best-effort rollback.

use std::sync::Arc;

use saga_runtime::{saga, saga_step, RollbackCause, SagaOutcome, SagaStatus};
use saga_tests::{engine, scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(compensate = undo_a, backoff = "1s")]
    a
);
scripted!(undo_a as "undo:a");
scripted!(
    #[saga_step(nothing_to_undo)]
    check
);
scripted!(
    #[saga_step(compensate = undo_b, backoff = "1s", compensation_retries = 2)]
    b
);
scripted!(undo_b as "undo:b");
scripted!(
    #[saga_step(compensate = undo_c)]
    c
);
scripted!(undo_c as "undo:c");
scripted!(
    #[saga_step(retries = 1, backoff = "0s")]
    d
);

saga! {
    /// a, check, b, c, d: d is the last step and has no compensation.
    Rollback(Trail, Script) { a, check, b, c, d }
}

saga! {
    #[saga(best_effort_rollback)]
    BestEffort(Trail, Script) { a, check, b, c, d }
}

#[tokio::test(start_paused = true)]
async fn completed_steps_are_compensated_in_reverse_order() {
    let script = Arc::new(Script::new().plan("d", [Plan::Transient("x"), Plan::Permanent("no")]));
    let engine = engine();
    let outcome = Rollback::on(&engine)
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();

    assert_eq!(
        script.keys(),
        ["a", "check", "b", "c", "d", "d", "undo:c", "undo:b", "undo:a"],
        "the failing step's own compensation does not run, nothing_to_undo is skipped"
    );
    let SagaOutcome::Compensated { cause, ctx, .. } = outcome else {
        panic!("{outcome:?}")
    };
    match cause {
        RollbackCause::StepFailed { step, error } => {
            assert_eq!(step, RollbackStep::D);
            assert_eq!(error.message(), "no", "the original error is kept");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ctx.entries,
        ["a", "check", "b", "c", "undo:c", "undo:b", "undo:a"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_first_step_compensates_nothing() {
    let script = Arc::new(Script::new().plan("a", [Plan::Permanent("down")]));
    let outcome = Rollback::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(script.keys(), ["a"]);
    assert!(matches!(
        outcome,
        SagaOutcome::Compensated {
            cause: RollbackCause::StepFailed {
                step: RollbackStep::A,
                ..
            },
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn compensations_are_retried_with_backoff() {
    let script = Arc::new(
        Script::new()
            .plan("d", [Plan::Permanent("no")])
            .plan("undo:b", [Plan::Transient("busy"), Plan::Transient("busy")]),
    );
    let outcome = Rollback::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(
        matches!(outcome, SagaOutcome::Compensated { .. }),
        "{outcome:?}"
    );
    let undo_b = script.calls_of("undo:b");
    assert_eq!(
        undo_b.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // backoff = "1s": 1 s, then 2 s.
    assert_eq!(
        undo_b[1].at - undo_b[0].at,
        std::time::Duration::from_secs(1)
    );
    assert_eq!(
        undo_b[2].at - undo_b[1].at,
        std::time::Duration::from_secs(2)
    );
    assert_eq!(undo_b[0].idempotency_key, undo_b[2].idempotency_key);
}

#[tokio::test(start_paused = true)]
async fn a_compensation_failing_for_good_stops_rollback_and_an_operator_can_retry() {
    // compensation_retries = 2: three attempts, all failing.
    let script = Arc::new(Script::new().plan("d", [Plan::Permanent("no")]).plan(
        "undo:b",
        [
            Plan::Transient("b1"),
            Plan::Transient("b2"),
            Plan::Transient("b3"),
        ],
    ));
    let engine = engine();
    let client = Rollback::on(&engine);
    let outcome = client
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();

    assert_eq!(
        script.keys(),
        ["a", "check", "b", "c", "d", "undo:c", "undo:b", "undo:b", "undo:b"],
        "rollback stops at the failing compensation; undo:a is not attempted"
    );
    let SagaOutcome::CompensationFailed {
        id,
        cause,
        failures,
        uncompensated,
        ctx,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(
        matches!(&cause, RollbackCause::StepFailed { step: RollbackStep::D, error } if error.message() == "no"),
        "the original error is not masked: {cause:?}"
    );
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].step, RollbackStep::B);
    assert_eq!(failures[0].error.message(), "b3");
    assert_eq!(uncompensated, [RollbackStep::B, RollbackStep::A]);
    assert_eq!(ctx.entries, ["a", "check", "b", "c", "undo:c"]);
    assert_eq!(
        client.status(id).await.unwrap(),
        SagaStatus::CompensationFailed {
            step: RollbackStep::B
        }
    );

    // The operator retries: compensation continues in order from b.
    let outcome = client.retry(id, script.clone()).await.unwrap();
    let SagaOutcome::Compensated { cause, ctx, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(matches!(
        cause,
        RollbackCause::StepFailed {
            step: RollbackStep::D,
            ..
        }
    ));
    assert_eq!(&script.keys()[9..], ["undo:b", "undo:a"]);
    assert_eq!(
        ctx.entries,
        ["a", "check", "b", "c", "undo:c", "undo:b", "undo:a"]
    );
    assert_eq!(client.status(id).await.unwrap(), SagaStatus::Compensated);

    // A compensated saga cannot be retried.
    let again = client.retry(id, script.clone()).await;
    assert!(
        matches!(
            &again,
            Err(saga_runtime::SagaError::Refused {
                refusal: saga_runtime::Refusal::Finished { .. },
                ..
            })
        ),
        "{again:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn best_effort_rollback_goes_on_and_reports_every_failure() {
    let script = Arc::new(
        Script::new()
            .plan("d", [Plan::Permanent("no")])
            .plan("undo:c", [Plan::Permanent("c broken")])
            .plan("undo:b", [Plan::Permanent("b broken")]),
    );
    let outcome = BestEffort::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(
        script.keys(),
        ["a", "check", "b", "c", "d", "undo:c", "undo:b", "undo:a"]
    );
    let SagaOutcome::CompensationFailed {
        failures,
        uncompensated,
        ctx,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    let failed: Vec<_> = failures
        .iter()
        .map(|f| (f.step, f.error.message().to_owned()))
        .collect();
    assert_eq!(
        failed,
        [
            (BestEffortStep::C, "c broken".to_owned()),
            (BestEffortStep::B, "b broken".to_owned())
        ]
    );
    assert_eq!(uncompensated, [BestEffortStep::C, BestEffortStep::B]);
    assert_eq!(ctx.entries, ["a", "check", "b", "c", "undo:a"]);
}

scripted!(
    #[saga_step(compensate = undo_forever, backoff = "10ms", compensation_retries = "forever")]
    forever
);
scripted!(undo_forever as "undo:forever");
scripted!(
    #[saga_step]
    boom
);

saga! {
    Forever(Trail, Script) { forever, boom }
}

#[tokio::test(start_paused = true)]
async fn compensation_retries_forever_keeps_going_until_it_succeeds() {
    let script = Arc::new(Script::new().plan("boom", [Plan::Permanent("boom")]).plan(
        "undo:forever",
        std::iter::repeat_n(Plan::Transient("later"), 40),
    ));
    let outcome = Forever::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(
        matches!(outcome, SagaOutcome::Compensated { .. }),
        "{outcome:?}"
    );
    assert_eq!(script.calls_of("undo:forever").len(), 41);
}
