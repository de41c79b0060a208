//! Many sagas run concurrently; the steps of one saga never overlap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use saga_runtime::{saga, saga_step, StepCx, StepError};
use saga_tests::{engine, Trail};

#[derive(Default)]
struct Meter {
    in_flight: Mutex<HashMap<String, usize>>,
    overlaps_within_a_saga: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

async fn measured(cx: &StepCx<Meter>) -> Result<(), StepError> {
    let meter = cx.deps();
    let saga = cx.saga_id().to_string();
    {
        let mut in_flight = meter.in_flight.lock().unwrap();
        let n = in_flight.entry(saga.clone()).or_default();
        *n += 1;
        if *n > 1 {
            meter.overlaps_within_a_saga.fetch_add(1, Ordering::SeqCst);
        }
    }
    let now = meter.running.fetch_add(1, Ordering::SeqCst) + 1;
    meter.max_running.fetch_max(now, Ordering::SeqCst);
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    meter.running.fetch_sub(1, Ordering::SeqCst);
    *meter.in_flight.lock().unwrap().get_mut(&saga).unwrap() -= 1;
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn one(_: &mut Trail, cx: &StepCx<Meter>) -> Result<(), StepError> {
    measured(cx).await
}

#[saga_step(nothing_to_undo)]
async fn two(_: &mut Trail, cx: &StepCx<Meter>) -> Result<(), StepError> {
    measured(cx).await
}

#[saga_step]
async fn three(_: &mut Trail, cx: &StepCx<Meter>) -> Result<(), StepError> {
    measured(cx).await
}

saga! { Busy(Trail, Meter) { one, two, three } }

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sagas_interleave_but_each_runs_its_steps_one_at_a_time() {
    let engine = engine();
    let client = Busy::on(&engine);
    let meter = Arc::new(Meter::default());
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(
            client
                .start_with(Trail::default(), meter.clone())
                .await
                .unwrap(),
        );
    }
    for id in ids {
        assert!(client.wait(id).await.unwrap().is_completed());
    }
    assert_eq!(meter.overlaps_within_a_saga.load(Ordering::SeqCst), 0);
    assert!(
        meter.max_running.load(Ordering::SeqCst) > 1,
        "sagas did run concurrently"
    );
}
