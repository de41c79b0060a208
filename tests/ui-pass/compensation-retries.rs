//! `compensation_retries = N` and `compensation_retries = "forever"`.

use saga_runtime::{saga, saga_step, CompensationRetries, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step(compensate = release, compensation_retries = 2)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

async fn release(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(compensate = refund, compensation_retries = "forever")]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

async fn refund(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn ship(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

saga! {
    pub OrderSaga(Ctx) {
        reserve,
        charge,
        ship,
    }
}

fn main() {
    let steps = OrderSaga::description().steps;
    assert_eq!(
        steps[0].policy.compensation_retries,
        CompensationRetries::Limited(2)
    );
    assert_eq!(
        steps[1].policy.compensation_retries,
        CompensationRetries::Forever
    );
    assert_eq!(
        steps[2].policy.compensation_retries,
        CompensationRetries::Limited(4)
    );
}
