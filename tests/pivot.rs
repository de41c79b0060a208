//! The pivot: once it completed, later failures are not compensated; the saga ends failed,
//! needing attention. A pivot that itself fails compensates the steps before it.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{saga, saga_step, SagaOutcome, SagaStatus};
use saga_tests::{engine, scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(compensate = refund)]
    debit
);
scripted!(refund as "undo:debit");
scripted!(
    #[saga_step(pivot, retries = 1, backoff = "0s")]
    credit
);
scripted!(
    #[saga_step(retries = 3, backoff = "1s")]
    notify
);

saga! { Transfer(Trail, Script) { debit, credit, notify } }

scripted!(
    #[saga_step(pivot, fallback = settle_by_wire)]
    settle
);
scripted!(
    // A fallback of a step that says what rollback does must say it too; the pivot is the
    // step's, and holds however the step completed.
    #[saga_step(nothing_to_undo)]
    settle_by_wire
);
scripted!(
    #[saga_step]
    confirm
);

saga! { Settlement(Trail, Script) { debit, settle, confirm } }

#[tokio::test(start_paused = true)]
async fn failures_after_the_pivot_are_retried_forward_then_fail_without_compensation() {
    let script =
        Arc::new(Script::new().plan("notify", std::iter::repeat_n(Plan::Transient("smtp"), 4)));
    let engine = engine();
    let outcome = Transfer::on(&engine)
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(
        script.keys(),
        ["debit", "credit", "notify", "notify", "notify", "notify"]
    );
    let notify = script.calls_of("notify");
    assert_eq!(
        notify[3].at - notify[0].at,
        Duration::from_secs(1 + 2 + 4),
        "with backoff"
    );
    let SagaOutcome::Failed {
        id,
        step,
        error,
        ctx,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(step, TransferStep::Notify);
    assert_eq!(error.message(), "smtp");
    assert_eq!(ctx.entries, ["debit", "credit"]);
    assert_eq!(
        Transfer::on(&engine).status(id).await.unwrap(),
        SagaStatus::Failed {
            step: TransferStep::Notify
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_pivot_compensates_the_steps_before_it() {
    let script =
        Arc::new(Script::new().plan("credit", [Plan::Transient("x"), Plan::Permanent("closed")]));
    let outcome = Transfer::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(script.keys(), ["debit", "credit", "credit", "undo:debit"]);
    assert!(
        matches!(outcome, SagaOutcome::Compensated { .. }),
        "{outcome:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn forward_retries_after_the_pivot_can_succeed() {
    let script =
        Arc::new(Script::new().plan("notify", std::iter::repeat_n(Plan::Transient("smtp"), 3)));
    let outcome = Transfer::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(script.calls_of("notify").len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_pivot_completed_through_its_fallback_is_still_the_point_of_no_return() {
    let script = Arc::new(
        Script::new()
            .plan("settle", [Plan::Permanent("rejected")])
            .plan("confirm", [Plan::Permanent("down")]),
    );
    let outcome = Settlement::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(
        script.keys(),
        ["debit", "settle", "settle_by_wire", "confirm"],
        "nothing before the pivot is compensated"
    );
    let SagaOutcome::Failed { step, error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(step, SettlementStep::Confirm);
    assert_eq!(error.message(), "down");
}
