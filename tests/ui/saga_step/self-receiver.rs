use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Ctx;

struct Service;

impl Service {
    #[saga_step(nothing_to_undo)]
    async fn reserve(&self, _ctx: &mut Ctx) -> Result<(), StepError> {
        Ok(())
    }
}

fn main() {}
