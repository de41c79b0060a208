use saga_runtime::{saga, saga_step, Output, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step(nothing_to_undo)]
async fn notify(_ctx: &mut Ctx, _charged: Output<charge>) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn charge(_ctx: &mut Ctx) -> Result<u64, StepError> {
    Ok(42)
}

saga! {
    pub OrderSaga(Ctx) {
        notify,
        charge,
    }
}

fn main() {}
