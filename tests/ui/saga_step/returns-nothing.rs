use saga_runtime::saga_step;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Ctx;

#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Ctx) {}

fn main() {}
