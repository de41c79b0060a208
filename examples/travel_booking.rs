//! Travel booking: a trip is a flight, a hotel and a rental car, booked with three providers.
//!
//! Each booking has a compensation that cancels it. By default no car is available (a permanent
//! error, so it is not retried): the saga cancels the hotel, then the flight, and every provider
//! ends with no booking left. With `--car-available` the whole trip is booked.
//!
//! ```text
//! cargo run --example travel_booking                    # car fails, trip rolled back
//! cargo run --example travel_booking -- --car-available # trip booked
//! ```

use std::sync::Mutex;

use saga_runtime::{saga, saga_step, RollbackCause, SagaOutcome, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// The trip: what is persisted. Each field holds a provider's booking reference once booked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Trip {
    traveller: String,
    flight: Option<String>,
    hotel: Option<String>,
    car: Option<String>,
}

/// A fake provider: its active bookings, in memory.
#[derive(Debug)]
pub struct Provider {
    name: &'static str,
    bookings: Mutex<Vec<String>>,
}

impl Provider {
    fn new(name: &'static str) -> Self {
        Provider {
            name,
            bookings: Mutex::new(Vec::new()),
        }
    }

    fn book(&self, reference: String) -> String {
        println!("  {}: booked {reference}", self.name);
        self.bookings.lock().unwrap().push(reference.clone());
        reference
    }

    /// Cancelling twice (or something never booked) is a no-op, so compensations can be retried.
    fn cancel(&self, reference: Option<String>) {
        if let Some(reference) = reference {
            println!("  {}: cancelled {reference}", self.name);
            self.bookings.lock().unwrap().retain(|b| *b != reference);
        }
    }
}

/// The providers' clients; never persisted.
#[derive(Debug)]
pub struct Providers {
    airline: Provider,
    hotel: Provider,
    car_rental: Provider,
    cars_available: bool,
}

#[saga_step(compensate = cancel_flight, timeout = "5s", retries = 2, backoff = "10ms")]
async fn book_flight(trip: &mut Trip, cx: &StepCx<Providers>) -> Result<(), StepError> {
    let reference = format!("flight LIS->NRT for {}", trip.traveller);
    trip.flight = Some(cx.deps().airline.book(reference));
    Ok(())
}

async fn cancel_flight(trip: &mut Trip, cx: &StepCx<Providers>) -> Result<(), StepError> {
    cx.deps().airline.cancel(trip.flight.take());
    Ok(())
}

#[saga_step(compensate = cancel_hotel, timeout = "5s", retries = 2, backoff = "10ms")]
async fn book_hotel(trip: &mut Trip, cx: &StepCx<Providers>) -> Result<(), StepError> {
    let reference = format!("3 nights in Tokyo for {}", trip.traveller);
    trip.hotel = Some(cx.deps().hotel.book(reference));
    Ok(())
}

async fn cancel_hotel(trip: &mut Trip, cx: &StepCx<Providers>) -> Result<(), StepError> {
    cx.deps().hotel.cancel(trip.hotel.take());
    Ok(())
}

// The last step's compensation only runs if a step is added after it; declaring it keeps the
// saga correct when that happens.
#[saga_step(compensate = cancel_car, timeout = "5s", retries = 2, backoff = "10ms")]
async fn book_car(trip: &mut Trip, cx: &StepCx<Providers>) -> Result<(), StepError> {
    let providers = cx.deps();
    if !providers.cars_available {
        println!(
            "  {}: attempt {}: no cars available",
            providers.car_rental.name,
            cx.attempt()
        );
        // Permanent: retrying will not conjure a car, so the step fails at once.
        return Err(StepError::permanent("no cars available at NRT"));
    }
    let reference = format!("compact car at NRT for {}", trip.traveller);
    trip.car = Some(providers.car_rental.book(reference));
    Ok(())
}

async fn cancel_car(trip: &mut Trip, cx: &StepCx<Providers>) -> Result<(), StepError> {
    cx.deps().car_rental.cancel(trip.car.take());
    Ok(())
}

saga! {
    /// Books a whole trip or nothing.
    pub TravelSaga(Trip, Providers) {
        book_flight,
        book_hotel,
        book_car,
    }
}

#[tokio::main]
async fn main() -> Result<(), saga_runtime::SagaError> {
    let cars_available = std::env::args().any(|a| a == "--car-available");
    print!("{}", TravelSaga::description());

    let providers = std::sync::Arc::new(Providers {
        airline: Provider::new("airline"),
        hotel: Provider::new("hotel"),
        car_rental: Provider::new("car rental"),
        cars_available,
    });
    let trip = Trip {
        traveller: "Ada".into(),
        ..Default::default()
    };
    println!("running TravelSaga (cars available: {cars_available})");
    // The saga shares the providers; we keep a handle to inspect them afterwards.
    let outcome = TravelSaga::run_with(trip, providers.clone()).await?;

    match &outcome {
        SagaOutcome::Completed { ctx, .. } => println!("trip booked: {ctx:?}"),
        // The failed step is a typed `TravelSagaStep`, so it can be matched on.
        SagaOutcome::Compensated {
            cause:
                RollbackCause::StepFailed {
                    step: TravelSagaStep::BookCar,
                    error,
                },
            ..
        } => println!("trip rolled back: TravelSagaStep::BookCar failed ({error})"),
        SagaOutcome::Compensated { cause, .. } => println!("trip rolled back: {cause}"),
        other => println!("trip needs attention: {other:?}"),
    }
    println!("status: {}", TravelSaga::status(outcome.id()).await?);

    println!("bookings left at the providers:");
    for provider in [&providers.airline, &providers.hotel, &providers.car_rental] {
        println!(
            "  {}: {:?}",
            provider.name,
            provider.bookings.lock().unwrap()
        );
    }
    Ok(())
}
