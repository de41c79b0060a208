use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

use saga_runtime::StepCx;

#[derive(Default)]
pub struct Services;

#[derive(Default)]
pub struct OtherServices;

#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx, _cx: &StepCx<Services>) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn charge(_ctx: &mut Ctx, _cx: &StepCx<OtherServices>) -> Result<(), StepError> {
    Ok(())
}

saga! {
    pub OrderSaga(Ctx, Services) {
        reserve,
        charge,
    }
}

fn main() {}
