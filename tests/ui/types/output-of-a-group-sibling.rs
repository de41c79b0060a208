use saga_runtime::{saga, saga_step, Output, StepError};
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

#[saga_step(nothing_to_undo)]
async fn book_car(_trip: &Trip, hotel: Output<book_hotel>) -> Result<(), StepError> {
    let _ = hotel;
    Ok(())
}

saga! { Travel(Trip) { check, parallel(book_flight, book_hotel, book_car) } }

fn main() {}
