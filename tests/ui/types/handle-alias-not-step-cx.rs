use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Ctx;

// An alias of `StepCx<D>` is accepted; an alias of something else is reported at the parameter.
type Handle = std::sync::Arc<String>;

#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx, _cx: &Handle) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
