use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

mod inventory {
    use super::*;

    #[saga_step(nothing_to_undo)]
    pub async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
        Ok(())
    }
}

mod seats {
    use super::*;

    #[saga_step]
    pub async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
        Ok(())
    }
}

saga! {
    pub OrderSaga(Ctx) {
        inventory::reserve,
        seats::reserve,
    }
}

fn main() {}
