use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Ctx;

#[saga_step(pivot, compensate = refund)]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

async fn refund(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
