use saga_runtime::{saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Trip;

#[saga_step(nothing_to_undo, fallback = book_train)]
async fn book_flight(_trip: &Trip) -> Result<String, StepError> {
    Ok("flight".into())
}

#[saga_step(nothing_to_undo)]
async fn book_train(_trip: &mut Trip) -> Result<String, StepError> {
    Ok("train".into())
}

fn main() {}
