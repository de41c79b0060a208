use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Ctx;

#[saga_step(compensate = release, nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

async fn release(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
