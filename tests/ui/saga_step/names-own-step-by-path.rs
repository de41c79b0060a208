use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Ctx;

#[saga_step(compensate = crate::reserve)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(fallback = self::charge, nothing_to_undo)]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
