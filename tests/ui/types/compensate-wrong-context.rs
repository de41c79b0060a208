use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Ctx;

#[derive(Clone, Default, Serialize, Deserialize)]
struct OtherCtx;

#[saga_step(compensate = release)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

async fn release(_ctx: &mut OtherCtx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
