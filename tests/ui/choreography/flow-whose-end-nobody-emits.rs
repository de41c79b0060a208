use saga_runtime::choreography::{Event, HandlerCx};
use saga_runtime::{choreography, saga_handler, StepError};
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

#[derive(Serialize, Deserialize)]
struct Paid;
impl Event for Paid {
    const NAME: &'static str = "payment.taken";
}

#[derive(Serialize, Deserialize)]
struct Lost;
impl Event for Lost {
    const NAME: &'static str = "order.lost";
}

#[saga_handler(nothing_to_undo)]
async fn reserve(_event: Placed, _cx: &HandlerCx<()>) -> Result<Reserved, StepError> {
    Ok(Reserved)
}

#[saga_handler(nothing_to_undo)]
async fn charge(_event: Reserved, _cx: &HandlerCx<()>) -> Result<Placed, StepError> {
    Ok(Placed)
}

choreography! {
    Flow(Placed => Paid) {
        inventory: reserve,
        payments: charge,
    }
}

fn main() {}
