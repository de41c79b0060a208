//! `#[saga(crate = "...")]` and `#[saga_step(crate = "...")]`: a crate that re-exports the
//! runtime under another path, with no `saga_runtime` in sight.

mod facade {
    pub use ::saga_runtime as runtime;
}

use facade::runtime::StepError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx;

#[facade::runtime::saga_step(crate = "facade::runtime", nothing_to_undo)]
async fn first(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[facade::runtime::saga_step(crate = "facade::runtime")]
async fn only(_ctx: &mut Ctx, _cx: &facade::runtime::StepCx<()>) -> Result<(), StepError> {
    Ok(())
}

facade::runtime::saga! {
    #[saga(crate = "facade::runtime")]
    pub ReexportedSaga(Ctx) {
        first,
        only,
    }
}

fn main() {
    assert_eq!(ReexportedSaga::description().step_names(), ["first", "only"]);
}
