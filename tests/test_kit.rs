//! The test kit's faults stand in for the attempts they name (the steps do not run), with the
//! effects a real failure has: a transient error is retried, a timeout compensates the step
//! that says so, a panic is caught, a failing compensation is retried; and its log says which
//! attempts ran, with which keys.

use std::sync::atomic::{AtomicU32, Ordering};

use saga_runtime::testing::{Fault, TestKit};
use saga_runtime::{
    saga, saga_step, Engine, ErrorKind, Phase, RollbackCause, SagaOutcome, StepCx, StepError,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ctx;

/// How many times each step's own code ran.
#[derive(Debug, Default)]
struct Ran {
    reserve: AtomicU32,
    release: AtomicU32,
    charge: AtomicU32,
}

#[saga_step(compensate = release, retries = 1, backoff = "0s", compensation_retries = 2)]
async fn reserve(_: &mut Ctx, cx: &StepCx<Ran>) -> Result<(), StepError> {
    cx.deps().reserve.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

async fn release(_: &mut Ctx, cx: &StepCx<Ran>) -> Result<(), StepError> {
    cx.deps().release.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[saga_step(timeout = "10s")]
async fn charge(_: &mut Ctx, cx: &StepCx<Ran>) -> Result<(), StepError> {
    cx.deps().charge.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

saga! { Kit(Ctx, Ran) { reserve, charge } }

async fn run(kit: &TestKit) -> (SagaOutcome<Ctx, KitStep>, std::sync::Arc<Ran>) {
    let ran = std::sync::Arc::new(Ran::default());
    let engine = Engine::builder().test_kit(kit).build();
    let outcome = Kit::on(&engine)
        .request(Ctx)
        .deps(ran.clone())
        .run()
        .await
        .unwrap();
    (outcome, ran)
}

#[tokio::test]
async fn a_transient_fault_is_retried_and_the_step_runs_once() {
    let kit = TestKit::new();
    kit.fail(KitStep::Reserve, 1, Fault::transient("busy"));
    let (outcome, ran) = run(&kit).await;
    assert!(outcome.is_completed());
    assert_eq!(
        ran.reserve.load(Ordering::SeqCst),
        1,
        "attempt 1 did not run it"
    );
    let calls = kit.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls[0].injected && calls[0].result.is_err() && calls[0].attempt == 1);
    assert!(!calls[1].injected && calls[1].result.is_ok() && calls[1].attempt == 2);
    assert_eq!(calls[0].key, calls[1].key, "the same key on every attempt");
    assert_eq!(calls[0].key, format!("{}:reserve", outcome.id()));
    assert_eq!(kit.succeeded(), ["reserve", "charge"]);
}

#[tokio::test]
async fn a_timeout_fault_fails_the_step_as_a_timeout_and_rolls_back() {
    let kit = TestKit::new();
    kit.fail("charge", 0, Fault::Timeout);
    let (outcome, ran) = run(&kit).await;
    match &outcome {
        SagaOutcome::Compensated {
            cause: RollbackCause::StepFailed { step, error },
            ..
        } => {
            assert_eq!(*step, KitStep::Charge);
            assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ran.charge.load(Ordering::SeqCst), 0);
    assert_eq!(ran.release.load(Ordering::SeqCst), 1);
    assert_eq!(kit.succeeded(), ["reserve", "undo:reserve"]);
}

#[tokio::test]
async fn a_panic_fault_is_caught_as_a_panic() {
    let kit = TestKit::new();
    kit.fail("charge", 1, Fault::panic("bug in the charge client"));
    let (outcome, _) = run(&kit).await;
    match &outcome {
        SagaOutcome::Compensated {
            cause: RollbackCause::StepFailed { error, .. },
            ..
        } => {
            assert_eq!(error.kind(), ErrorKind::Panic, "{error}");
            assert!(
                error.to_string().contains("bug in the charge client"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_failing_compensation_is_retried_with_its_own_key() {
    let kit = TestKit::new();
    kit.fail("charge", 1, Fault::permanent("declined"));
    kit.fail_compensation("reserve", 1, Fault::transient("inventory busy"));
    kit.fail_compensation("reserve", 2, Fault::transient("inventory busy"));
    let (outcome, ran) = run(&kit).await;
    assert!(
        matches!(outcome, SagaOutcome::Compensated { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        ran.release.load(Ordering::SeqCst),
        1,
        "the third attempt ran it"
    );
    let undo: Vec<_> = kit
        .calls()
        .into_iter()
        .filter(|c| c.phase == Phase::Compensation)
        .collect();
    assert_eq!(undo.len(), 3);
    assert_eq!(
        undo.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(undo
        .iter()
        .all(|c| c.key == format!("{}:reserve:compensate", outcome.id())));
}

#[tokio::test]
async fn a_compensation_that_fails_for_good_leaves_the_saga_for_an_operator() {
    let kit = TestKit::new();
    kit.fail("charge", 1, Fault::permanent("declined"));
    kit.fail_compensation("reserve", 0, Fault::permanent("inventory gone"));
    let (outcome, ran) = run(&kit).await;
    assert!(
        matches!(outcome, SagaOutcome::CompensationFailed { .. }),
        "{outcome:?}"
    );
    assert_eq!(ran.release.load(Ordering::SeqCst), 0);
}
