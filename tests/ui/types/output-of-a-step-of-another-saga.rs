use saga_runtime::{saga, saga_step, Output, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step]
async fn quote(_ctx: &mut Ctx) -> Result<u64, StepError> {
    Ok(42)
}

#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn charge(_ctx: &mut Ctx, _price: Output<quote>) -> Result<(), StepError> {
    Ok(())
}

saga! { pub Quotes(Ctx) { quote } }

saga! {
    pub OrderSaga(Ctx) {
        reserve,
        charge,
    }
}

fn main() {}
