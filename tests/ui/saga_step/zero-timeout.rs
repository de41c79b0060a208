use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Ctx;

#[saga_step(nothing_to_undo, timeout = "0s")]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
