use saga_runtime::choreography::{Event, HandlerCx};
use saga_runtime::saga_handler;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Placed;
impl Event for Placed {
    const NAME: &'static str = "order.placed";
}

#[derive(Serialize, Deserialize)]
struct Reserved;
impl Event for Reserved {
    const NAME: &'static str = "stock.reserved";
}

#[saga_handler(nothing_to_undo)]
async fn reserve(_event: Placed, _cx: &HandlerCx<()>) -> Result<Reserved, String> {
    Ok(Reserved)
}

fn main() {}
