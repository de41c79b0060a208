use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Ctx;

#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
