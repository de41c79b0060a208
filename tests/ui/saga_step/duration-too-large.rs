use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

// 2^64 ns is about 584 years: one second more than the most.
#[saga_step(timeout = "18446744074s")]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
