use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[derive(Clone, Default)]
pub struct Cart;

#[saga_step]
async fn charge(_ctx: &mut Cart) -> Result<(), StepError> {
    Ok(())
}

saga! {
    pub OrderSaga(Cart) {
        charge,
    }
}

fn main() {}
