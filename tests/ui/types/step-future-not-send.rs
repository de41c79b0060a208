use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Ctx;

use std::rc::Rc;

#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx) -> Result<(), StepError> {
    let local = Rc::new(1);
    std::future::ready(()).await;
    drop(local);
    Ok(())
}

fn main() {}
