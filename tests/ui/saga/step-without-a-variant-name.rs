use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step(nothing_to_undo)]
async fn __(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn _1(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

saga! {
    pub OrderSaga(Ctx) {
        __,
        _1,
        charge,
    }
}

fn main() {}
