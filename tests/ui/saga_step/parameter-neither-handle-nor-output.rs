use saga_runtime::{saga_step, StepCx, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step]
async fn charge(_ctx: &mut Ctx, _cx: &StepCx, amount: u32) -> Result<(), StepError> {
    let _ = amount;
    Ok(())
}

fn main() {}
