use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

mod receipts {
    use super::Ctx;
    use saga_runtime::StepError;

    pub async fn send(_ctx: &mut Ctx) -> Result<(), StepError> {
        Ok(())
    }
}

fn main() {
    // Steps and saga inside a function body, the plain functions first and by path: one error
    // each, at each, saying what is missing.
    async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
        Ok(())
    }

    #[saga_step(nothing_to_undo)]
    async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
        Ok(())
    }

    saga! {
        OrderSaga(Ctx) {
            reserve,
            charge,
            receipts::send,
        }
    }
}
