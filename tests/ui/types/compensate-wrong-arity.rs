use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Ctx;

use saga_runtime::StepCx;

#[saga_step(compensate = release)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

async fn release(_ctx: &mut Ctx, _cx: &StepCx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
