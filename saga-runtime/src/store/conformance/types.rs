//! Cases on the saga types' shapes a store records for tools.

use std::time::Duration;

use crate::store::SagaStore;
use crate::{SagaShape, StepShape, UndoShape};

fn shape(name: &str, steps: &[&str]) -> SagaShape {
    let json = serde_json::json!({
        "name": name,
        "steps": steps.iter().enumerate().map(|(i, step)| serde_json::json!({
            "name": step,
            "undo": if i + 1 < steps.len() { "compensate" } else { "unspecified" },
            "compensation": (i + 1 < steps.len()).then(|| format!("undo_{step}")),
        })).collect::<Vec<_>>(),
    });
    serde_json::from_value(json).expect("a valid shape")
}

pub(super) async fn saga_types_are_recorded_once_per_shape(store: Box<dyn SagaStore>) {
    assert_eq!(store.saga_types().await.unwrap(), []);
    let first = shape("OrderSaga", &["reserve", "charge"]);
    let second = shape("OrderSaga", &["reserve", "charge", "ship"]);
    let other = shape("AuditSaga", &["write"]);
    assert_eq!(first.steps[0].undo, UndoShape::Compensate);
    assert!(matches!(
        &first.steps[1],
        StepShape {
            compensation: None,
            ..
        }
    ));
    store.record_type(first.clone()).await.unwrap();
    // Recorded times are in milliseconds: the versions are told apart by them.
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.record_type(second.clone()).await.unwrap();
    store.record_type(first.clone()).await.unwrap();
    store.record_type(other.clone()).await.unwrap();
    assert_eq!(
        store.saga_types().await.unwrap(),
        [other, second, first],
        "by name, the newest version of a type first, each shape once"
    );
}
