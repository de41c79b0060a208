use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Ctx;

use saga_runtime::StepCx;

#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx, _cx: StepCx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
