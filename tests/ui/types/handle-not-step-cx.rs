use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Ctx;

#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx, _cx: &String) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
