use saga_runtime::remote::{Command, ParticipantCx};
use saga_runtime::{saga_handler, StepError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Charge;

impl Command for Charge {
    const SERVICE: &'static str = "payments";
    const ACTION: &'static str = "charge";
    type Reply = ();
}

async fn refund(_command: Charge, _cx: ParticipantCx<()>) -> Result<(), StepError> {
    Ok(())
}

#[saga_handler(compensate = refund)]
async fn charge(_command: Charge, _cx: ParticipantCx<()>) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
