//! `#[saga(crate = "...")]`: a crate that re-exports the runtime under another path.

mod facade {
    pub use ::saga_runtime as runtime;
}

use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx;

#[saga_step]
async fn only(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

facade::runtime::saga! {
    #[saga(crate = "facade::runtime")]
    pub ReexportedSaga(Ctx) {
        only,
    }
}

fn main() {
    assert_eq!(ReexportedSaga::description().step_names(), ["only"]);
}
