//! A parallel group: members read the context (`&Ctx`), their compensations too, and later
//! steps take their outputs; a final group's members all say what rollback does with them.
use saga_runtime::{saga, saga_step, Output, StepCx, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Trip;

#[saga_step(compensate = cancel_flight, fallback = book_train)]
async fn book_flight(_trip: &Trip) -> Result<String, StepError> {
    Ok("flight".into())
}

async fn cancel_flight(_trip: &Trip, _booked: String) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn book_train(_trip: &Trip) -> Result<String, StepError> {
    Ok("train".into())
}

#[saga_step(compensate = cancel_hotel)]
async fn book_hotel(_trip: &Trip, _cx: &StepCx) -> Result<String, StepError> {
    Ok("hotel".into())
}

async fn cancel_hotel(_trip: &Trip, _cx: &StepCx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn confirm(
    _trip: &mut Trip,
    _flight: Output<book_flight>,
    _hotel: Output<book_hotel>,
) -> Result<(), StepError> {
    Ok(())
}

saga! { Travel(Trip) { parallel(book_flight, book_hotel), confirm } }
saga! { FinalGroup(Trip) { confirm_first, parallel(book_flight, book_hotel) } }

#[saga_step(nothing_to_undo)]
async fn confirm_first(_trip: &mut Trip) -> Result<(), StepError> {
    Ok(())
}

fn main() {
    assert_eq!(<Travel as saga_runtime::Saga>::GROUPS, &[0..2]);
    assert_eq!(<FinalGroup as saga_runtime::Saga>::GROUPS, &[1..3]);
}
