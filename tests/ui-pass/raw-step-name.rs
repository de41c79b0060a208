//! A step named with a raw identifier gets the variant of its name without `r#`.

use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step(nothing_to_undo, timeout = "18446744073s")]
async fn r#type(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn r#match(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

saga! {
    pub OrderSaga(Ctx) {
        r#type,
        r#match,
    }
}

fn main() {
    assert_eq!(OrderSagaStep::Type.name(), "type");
    assert_eq!(OrderSagaStep::Match.name(), "match");
}
