use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

// The second parameter is not the step handle; the step is listed below all the same.
#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx, _amount: u32) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(fallback = reserve)]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

// Only the bad parameter is reported, not a second error here.
saga! {
    pub OrderSaga(Ctx) {
        reserve,
        charge,
    }
}

fn main() {}
