//! Retries: N retries give N + 1 attempts; only transient errors are retried; the wait between
//! attempts is `base * 2^(n-1)`, capped, checked exactly under tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{
    saga, saga_step, Backoff, Engine, Jitter, SagaEventKind, SagaOutcome, StepError,
};
use saga_tests::{engine, scripted, Plan, Script, Trail};

scripted!(
    #[saga_step(retries = 3, backoff = "100ms")]
    flaky
);
saga! { Flaky(Trail, Script) { flaky } }

scripted!(
    #[saga_step(retries = 5, backoff = "0s")]
    instant
);
saga! { Instant(Trail, Script) { instant } }

fn gaps(script: &Script, key: &str) -> Vec<Duration> {
    let calls = script.calls_of(key);
    calls.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_with_exponential_backoff() {
    let script = Arc::new(Script::new().plan(
        "flaky",
        [
            Plan::Transient("1"),
            Plan::Transient("2"),
            Plan::Transient("3"),
        ],
    ));
    let outcome = Flaky::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    let attempts: Vec<u32> = script.calls_of("flaky").iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, [1, 2, 3, 4], "retries = 3 gives 4 attempts");
    assert_eq!(
        gaps(&script, "flaky"),
        [
            Duration::from_millis(100),
            Duration::from_millis(200),
            Duration::from_millis(400)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_step_fails_for_good_when_attempts_run_out() {
    let script =
        Arc::new(Script::new().plan("flaky", std::iter::repeat_n(Plan::Transient("t"), 9)));
    let outcome = Flaky::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(script.calls_of("flaky").len(), 4);
    let SagaOutcome::Compensated { cause, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(cause.to_string(), "step `flaky` failed: t");
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let script = Arc::new(Script::new().plan("flaky", [Plan::Permanent("bad request")]));
    let outcome = Flaky::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(script.calls_of("flaky").len(), 1);
    assert!(!outcome.is_completed());
}

#[tokio::test(start_paused = true)]
async fn zero_backoff_retries_at_once() {
    let script =
        Arc::new(Script::new().plan("instant", [Plan::Transient("a"), Plan::Transient("b")]));
    let outcome = Instant::on(&engine())
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed());
    assert_eq!(gaps(&script, "instant"), [Duration::ZERO, Duration::ZERO]);
}

#[tokio::test(start_paused = true)]
async fn backoff_is_capped() {
    let engine = Engine::builder()
        .backoff(Backoff {
            cap: Duration::from_millis(300),
            jitter: Jitter::None,
        })
        .build();
    let script =
        Arc::new(Script::new().plan("flaky", std::iter::repeat_n(Plan::Transient("t"), 3)));
    let outcome = Flaky::on(&engine)
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed());
    assert_eq!(
        gaps(&script, "flaky"),
        [
            Duration::from_millis(100),
            Duration::from_millis(200),
            Duration::from_millis(300)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_each_wait_between_half_and_all_of_the_nominal_delay() {
    let engine = Engine::in_memory(); // default: equal jitter
    let mut events = engine.subscribe();
    let script =
        Arc::new(Script::new().plan("flaky", std::iter::repeat_n(Plan::Transient("t"), 3)));
    let outcome = Flaky::on(&engine)
        .run_with(Trail::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed());
    let mut scheduled = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let SagaEventKind::RetryScheduled { delay, attempt, .. } = event.kind {
            scheduled.push((attempt, delay));
        }
    }
    assert_eq!(scheduled.len(), 3);
    let actual = gaps(&script, "flaky");
    for ((attempt, delay), gap) in scheduled.into_iter().zip(actual) {
        let nominal = Duration::from_millis(100 * 2u64.pow(attempt - 1));
        assert!(
            delay >= nominal / 2 && delay <= nominal,
            "attempt {attempt}: {delay:?}"
        );
        assert_eq!(
            gap, delay,
            "the runtime waits exactly the delay it announced"
        );
    }
}

#[saga_step(retries = 2, backoff = "0s")]
async fn converts(_: &mut Trail) -> Result<(), StepError> {
    // Any std error converts with `?`, as a transient error.
    "not a number".parse::<u32>()?;
    Ok(())
}
saga! { Converts(Trail) { converts } }

#[tokio::test(start_paused = true)]
async fn errors_converted_with_question_mark_are_transient() {
    let engine = engine();
    let outcome = Converts::on(&engine).run(Trail::default()).await.unwrap();
    let history = Converts::on(&engine).history(outcome.id()).await.unwrap();
    let attempts = history
        .iter()
        .filter(|e| matches!(e.kind, SagaEventKind::StepStarted { .. }))
        .count();
    assert_eq!(attempts, 3);
}
