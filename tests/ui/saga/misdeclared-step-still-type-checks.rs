use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step(compensate = release, timeout = "3 parsecs")]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

async fn release(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

saga! {
    pub OrderSaga(Ctx) {
        reserve,
        charge,
    }
}

// Only the bad `timeout` above is reported: the saga and its uses still type-check.
async fn place_order() -> Result<OrderSagaOutcome, saga_runtime::SagaError> {
    let _steps: [OrderSagaStep; 2] = OrderSagaStep::ALL;
    OrderSaga::run(Ctx).await
}

fn main() {}
