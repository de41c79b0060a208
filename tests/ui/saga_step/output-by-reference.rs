use saga_runtime::{saga_step, Output, StepCx, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step(nothing_to_undo)]
async fn charge(_ctx: &mut Ctx) -> Result<u64, StepError> {
    Ok(42)
}

#[saga_step]
async fn notify(_ctx: &mut Ctx, _cx: &StepCx, _charged: &Output<charge>) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
