use saga_runtime::remote::{Command, ParticipantCx};
use saga_runtime::{saga_handler, StepError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Charge;

#[derive(Serialize, Deserialize)]
struct Payment;

impl Command for Charge {
    const SERVICE: &'static str = "payments";
    const ACTION: &'static str = "charge";
    type Reply = Payment;
}

#[saga_handler]
async fn charge(_command: Charge, _cx: ParticipantCx<()>) -> Result<String, StepError> {
    Ok(String::new())
}

fn main() {}
