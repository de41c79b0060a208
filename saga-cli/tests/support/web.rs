//! Sagas for the dashboard's tests to look at.

use std::time::Duration;

use saga_runtime::{Engine, SagaId, SagaStatus};

use super::{Order, Orders, HANGING};

/// A running saga: `reserve` hangs until its item leaves `HANGING`.
pub async fn running(engine: &Engine, item: &str) -> SagaId {
    running_at(engine, item, item, 0).await
}

/// A running saga whose step `step` hangs until `hang` leaves `HANGING`.
pub async fn running_at(engine: &Engine, item: &str, hang: &str, step: usize) -> SagaId {
    HANGING.lock().unwrap().push(hang.into());
    let id = Orders::on(engine)
        .start(Order {
            item: item.into(),
            ..Order::default()
        })
        .await
        .unwrap();
    // Until the worker has recorded the step as under way.
    for _ in 0..500 {
        let status = Orders::on(engine).status(id).await.unwrap();
        if matches!(status, SagaStatus::Running { step: s } if s.index() == step) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    id
}
