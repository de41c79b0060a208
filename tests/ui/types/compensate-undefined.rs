use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Ctx;

#[saga_step(compensate = release)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
