use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

saga! {
    #[saga(deadline = "0s")]
    pub OrderSaga(Ctx) {
        charge,
    }
}

fn main() {}
