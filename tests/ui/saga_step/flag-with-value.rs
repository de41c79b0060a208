use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Ctx;

#[saga_step(pivot = true)]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
