//! The step handle: saga id, saga type, step name, attempt, idempotency keys, and shared
//! dependencies.

use std::sync::{Arc, Mutex};

use saga_runtime::{saga, saga_step, Phase, StepCx, StepError};
use saga_tests::{engine, Trail};

/// What one call saw: saga id, saga type, step, attempt, phase, idempotency key.
type Handle = (String, String, String, u32, Phase, String);

#[derive(Default)]
struct Seen {
    handles: Mutex<Vec<Handle>>,
    deps_addr: Mutex<Vec<usize>>,
}

fn record(cx: &StepCx<Seen>) {
    cx.deps().handles.lock().unwrap().push((
        cx.saga_id().to_string(),
        cx.saga_type().to_owned(),
        cx.step().to_owned(),
        cx.attempt(),
        cx.phase(),
        cx.idempotency_key(),
    ));
    cx.deps()
        .deps_addr
        .lock()
        .unwrap()
        .push(cx.deps() as *const Seen as usize);
}

#[saga_step(compensate = unreserve)]
async fn reserve(_: &mut Trail, cx: &StepCx<Seen>) -> Result<(), StepError> {
    record(cx);
    Ok(())
}

async fn unreserve(_: &mut Trail, cx: &StepCx<Seen>) -> Result<(), StepError> {
    record(cx);
    Ok(())
}

#[saga_step(retries = 1, backoff = "0s")]
async fn charge(_: &mut Trail, cx: &StepCx<Seen>) -> Result<(), StepError> {
    record(cx);
    Err(StepError::transient("declined"))
}

saga! { Handles(Trail, Seen) { reserve, charge } }

#[tokio::test(start_paused = true)]
async fn the_handle_names_the_saga_step_and_attempt_with_stable_keys() {
    let seen = Arc::new(Seen::default());
    let engine = engine();
    let outcome = Handles::on(&engine)
        .run_with(Trail::default(), seen.clone())
        .await
        .unwrap();
    let id = outcome.id().to_string();
    let handles = seen.handles.lock().unwrap().clone();
    let expect = |step: &str, attempt, phase, key: String| {
        (
            id.clone(),
            "Handles".to_owned(),
            step.to_owned(),
            attempt,
            phase,
            key,
        )
    };
    assert_eq!(
        handles,
        [
            expect("reserve", 1, Phase::Action, format!("{id}:reserve")),
            expect("charge", 1, Phase::Action, format!("{id}:charge")),
            expect("charge", 2, Phase::Action, format!("{id}:charge")),
            expect(
                "reserve",
                1,
                Phase::Compensation,
                format!("{id}:reserve:compensate")
            ),
        ]
    );
    let addrs = seen.deps_addr.lock().unwrap().clone();
    assert!(
        addrs.iter().all(|a| *a == Arc::as_ptr(&seen) as usize),
        "one shared instance"
    );
}
