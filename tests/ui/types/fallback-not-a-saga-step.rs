use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Ctx;

#[saga_step(nothing_to_undo, fallback = reserve_elsewhere)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

async fn reserve_elsewhere(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
