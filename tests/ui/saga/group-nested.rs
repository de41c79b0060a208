use saga_runtime::{saga, saga_step, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Trip;

#[saga_step(nothing_to_undo)]
async fn check(_trip: &mut Trip) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn book_flight(_trip: &Trip) -> Result<String, StepError> {
    Ok("flight".into())
}

#[saga_step(nothing_to_undo)]
async fn book_hotel(_trip: &Trip) -> Result<String, StepError> {
    Ok("hotel".into())
}

saga! { Travel(Trip) { check, parallel(book_flight, parallel(book_hotel)) } }

fn main() {}
