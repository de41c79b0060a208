//! The metrics a completed, a compensated and a parked saga record, read from a recorder
//! installed before they ran: counters per saga type, retries per step, saga and step
//! durations. (One test in its own binary: the recorder is process-wide.)

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use saga_runtime::{saga, saga_step, Engine, SagaOutcome, StepCx, StepError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Order {
    decline: bool,
}

#[saga_step(compensate = release, retries = 2, backoff = "0s")]
async fn reserve(_: &mut Order, cx: &StepCx) -> Result<(), StepError> {
    match cx.attempt() {
        // One retry per saga.
        1 => Err(StepError::transient("stock service busy")),
        _ => Ok(()),
    }
}

async fn release(_: &mut Order, _: &StepCx) -> Result<(), StepError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(())
}

#[saga_step]
async fn charge(order: &mut Order) -> Result<(), StepError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    match order.decline {
        true => Err(StepError::permanent("card declined")),
        false => Ok(()),
    }
}

saga! { Metered(Order, ()) { reserve, charge } }

/// The value of one metric, by name and labels (in any order).
fn value<'a>(
    snapshot: &'a [(metrics_util::CompositeKey, DebugValue)],
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot.iter().find_map(|(key, value)| {
        let k = key.key();
        let mut have: Vec<(&str, &str)> = k.labels().map(|l| (l.key(), l.value())).collect();
        let mut want = labels.to_vec();
        have.sort();
        want.sort();
        (key.kind() == kind && k.name() == name && have == want).then_some(value)
    })
}

fn snapshot(snapshotter: &Snapshotter) -> Vec<(metrics_util::CompositeKey, DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect()
}

#[tokio::test]
async fn a_completed_a_compensated_and_a_parked_saga_record_their_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");

    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .sqlite(dir.path().join("sagas.db"))
        .unwrap()
        .build();
    let done = Metered::on(&engine).run(Order::default()).await.unwrap();
    assert!(done.is_completed());
    let undone = Metered::on(&engine)
        .run(Order { decline: true })
        .await
        .unwrap();
    assert!(matches!(undone, SagaOutcome::Compensated { .. }));

    // A saga enqueued for a worker, then recovered by an engine that does not know its type:
    // parked.
    let other = dir.path().join("other.db");
    let client = Engine::builder()
        .sqlite(&other)
        .unwrap()
        .claims(false)
        .build();
    let orphan = Metered::on(&client)
        .request(Order::default())
        .enqueue()
        .await
        .unwrap();
    drop(client);
    let stranger = Engine::builder().sqlite(&other).unwrap().build();
    let report = stranger.recover().await.unwrap();
    assert_eq!(report.parked.len(), 1, "{report:?}");
    assert_eq!(report.parked[0].0, orphan);

    let all = snapshot(&snapshotter);
    let counter = |name: &str, labels: &[(&str, &str)]| match value(
        &all,
        MetricKind::Counter,
        name,
        labels,
    ) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?} in {all:#?}"),
    };
    let histogram = |name: &str, labels: &[(&str, &str)]| -> Vec<f64> {
        match value(&all, MetricKind::Histogram, name, labels) {
            Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.0).collect(),
            other => panic!("{name} {labels:?}: {other:?} in {all:#?}"),
        }
    };
    let saga = [("saga_type", "Metered")];
    assert_eq!(
        counter("saga_started_total", &saga),
        3,
        "two runs and the enqueued one"
    );
    assert_eq!(counter("saga_parked_total", &saga), 1);
    assert_eq!(counter("saga_completed_total", &saga), 1);
    assert_eq!(counter("saga_compensated_total", &saga), 1);
    assert_eq!(counter("saga_compensation_failed_total", &saga), 0);
    assert_eq!(counter("saga_failed_total", &saga), 0);
    assert_eq!(counter("saga_fenced_writes_total", &saga), 0);
    let step = |name| [("saga_type", "Metered"), ("step", name)];
    assert_eq!(counter("saga_step_retries_total", &step("reserve")), 2);
    assert_eq!(counter("saga_step_retries_total", &step("charge")), 0);

    let outcome = |o| [("saga_type", "Metered"), ("outcome", o)];
    let completed = histogram("saga_duration_seconds", &outcome("completed"));
    let compensated = histogram("saga_duration_seconds", &outcome("compensated"));
    assert_eq!(completed.len(), 1);
    assert_eq!(compensated.len(), 1);
    // Each saga waited at least for `charge` (20 ms); the compensated one also for `release`.
    assert!(completed[0] >= 0.020, "{completed:?}");
    assert!(compensated[0] >= 0.025, "{compensated:?}");
    // Succeeded attempts: `reserve` twice (its second attempts), `charge` once, `release` once.
    assert_eq!(
        histogram("saga_step_duration_seconds", &step("reserve")).len(),
        2
    );
    let charge = histogram("saga_step_duration_seconds", &step("charge"));
    assert_eq!(charge.len(), 1);
    assert!(charge[0] >= 0.020, "{charge:?}");
    let release = histogram("saga_step_duration_seconds", &step("undo:reserve"));
    assert_eq!(release.len(), 1);
    assert!(release[0] >= 0.005, "{release:?}");
    assert!(
        value(
            &all,
            MetricKind::Histogram,
            "saga_step_duration_seconds",
            &step("undo:charge")
        )
        .is_none(),
        "`charge` has no compensation, and no series for one"
    );
}
