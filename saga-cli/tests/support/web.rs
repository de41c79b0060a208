//! Sagas for the dashboard's tests to look at.

use std::time::Duration;

use saga_runtime::{Engine, SagaId, SagaStatus};

use super::{Order, Orders, HANGING};

/// A running saga: `reserve` hangs until its item leaves `HANGING`.
pub async fn running(engine: &Engine, item: &str) -> SagaId {
    HANGING.lock().unwrap().push(item.into());
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
        if matches!(status, SagaStatus::Running { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    id
}
