//! Per-attempt timeouts: a timeout is transient, applies to each attempt (not to the retry loop),
//! and a step may opt in to being compensated after timing out for good.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{saga, saga_step, ErrorKind, RollbackCause, SagaOutcome};
use saga_tests::{engine, scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(compensate = undo_first)]
    first
);
scripted!(undo_first as "undo:first");
scripted!(
    #[saga_step(compensate = undo_slow, timeout = "1s", retries = 2, backoff = "0s")]
    slow
);
scripted!(undo_slow as "undo:slow");
scripted!(
    #[saga_step(compensate = undo_slow_effects, timeout = "1s", compensate_on_timeout)]
    slow_effects
);
scripted!(undo_slow_effects as "undo:slow_effects");

saga! { Slow(Trail, Script) { first, slow } }
saga! { SlowEffects(Trail, Script) { first, slow_effects } }

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried() {
    let script = Arc::new(Script::new().plan("slow", [Plan::Sleep(Duration::from_secs(60))]));
    let start = tokio::time::Instant::now();
    let outcome = Slow::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    let calls = script.calls_of("slow");
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[1].at - calls[0].at,
        Duration::from_secs(1),
        "cut off at the timeout"
    );
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(1));
    // The timed-out attempt's push was discarded.
    assert_eq!(outcome.ctx().entries, ["first", "slow"]);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_applies_to_each_attempt_not_to_all_of_them() {
    // Three attempts of 0.9 s each: 2.7 s in all, past the 1 s timeout, yet none timed out.
    let nine = Duration::from_millis(900);
    let script = Arc::new(Script::new().plan(
        "slow",
        [
            Plan::SlowTransient(nine, "a"),
            Plan::SlowTransient(nine, "b"),
            Plan::Sleep(nine),
        ],
    ));
    let start = tokio::time::Instant::now();
    let outcome = Slow::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(script.calls_of("slow").len(), 3);
    assert_eq!(
        tokio::time::Instant::now() - start,
        Duration::from_millis(2700)
    );
}

#[tokio::test(start_paused = true)]
async fn timing_out_for_good_compensates_earlier_steps_but_not_the_step_itself() {
    let script = Arc::new(Script::new().plan(
        "slow",
        std::iter::repeat_n(Plan::Sleep(Duration::from_secs(5)), 3),
    ));
    let outcome = Slow::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(
        script.keys(),
        ["first", "slow", "slow", "slow", "undo:first"]
    );
    let SagaOutcome::Compensated {
        cause: RollbackCause::StepFailed { step, error },
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(step, SlowStep::Slow);
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.message(), "timed out after 1s");
}

#[tokio::test(start_paused = true)]
async fn compensate_on_timeout_undoes_the_timed_out_step_first() {
    let script =
        Arc::new(Script::new().plan("slow_effects", [Plan::Sleep(Duration::from_secs(5))]));
    let outcome = SlowEffects::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(
        script.keys(),
        ["first", "slow_effects", "undo:slow_effects", "undo:first"],
        "the timed-out step is compensated, then the earlier one"
    );
    // Its compensation saw the last committed context, without the timed-out attempt's push.
    assert_eq!(
        outcome.ctx().entries,
        ["first", "undo:slow_effects", "undo:first"]
    );
}
