use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step(compensate = release, fallback = reserve_elsewhere)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

async fn release(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

// Stands in for `reserve`, which is compensated; says nothing of its own undo.
#[saga_step]
async fn reserve_elsewhere(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
