use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct OtherCtx;

#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn charge(_ctx: &mut OtherCtx) -> Result<(), StepError> {
    Ok(())
}

saga! {
    pub OrderSaga(Ctx) {
        reserve,
        charge,
    }
}

fn main() {}
