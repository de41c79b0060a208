//! Travel booking: a trip is a flight, a hotel and a rental car, booked with three providers at
//! once (a parallel group), then confirmed.
//!
//! The three bookings run concurrently: each takes 300 ms, and the group takes 300 ms, not
//! 900. Each booking returns its provider's reference as its output; its compensation receives
//! that reference and cancels it, and `confirm_trip` takes all three. By default no car is
//! available (a permanent error, so it is not retried): the flight and hotel bookings, already
//! under way, finish, then both are cancelled at once, and every provider ends with no booking
//! left. With `--car-available` the whole trip is booked.
//!
//! ```text
//! cargo run --example travel_booking                    # car fails, trip rolled back
//! cargo run --example travel_booking -- --car-available # trip booked
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

use saga_runtime::{saga, saga_step, Output, RollbackCause, SagaOutcome, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// The trip: what is persisted. The members of the group read it (`&Trip`); what they book is
/// their output, and `confirm_trip` writes the references here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Trip {
    traveller: String,
    confirmation: Option<String>,
}

/// A provider's booking reference: a booking step's output, which its compensation receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Booking {
    reference: String,
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

    /// Books after a 300 ms round trip to the provider.
    async fn book(&self, started: Instant, reference: String) -> Booking {
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("  {:>4} ms  {}: booked {reference}", ms(started), self.name);
        self.bookings.lock().unwrap().push(reference.clone());
        Booking { reference }
    }

    /// Cancelling twice (or something never booked) is a no-op, so compensations can be retried.
    async fn cancel(&self, started: Instant, booking: Booking) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        println!(
            "  {:>4} ms  {}: cancelled {}",
            ms(started),
            self.name,
            booking.reference
        );
        self.bookings
            .lock()
            .unwrap()
            .retain(|b| *b != booking.reference);
    }
}

fn ms(started: Instant) -> u128 {
    started.elapsed().as_millis()
}

/// The providers' clients; never persisted.
#[derive(Debug)]
pub struct Providers {
    airline: Provider,
    hotel: Provider,
    car_rental: Provider,
    cars_available: bool,
    started: Instant,
}

#[saga_step(compensate = cancel_flight, timeout = "5s", retries = 2, backoff = "10ms")]
async fn book_flight(trip: &Trip, cx: &StepCx<Providers>) -> Result<Booking, StepError> {
    let p = cx.deps();
    let reference = format!("flight LIS->NRT for {}", trip.traveller);
    Ok(p.airline.book(p.started, reference).await)
}

async fn cancel_flight(
    _trip: &Trip,
    cx: &StepCx<Providers>,
    booking: Booking,
) -> Result<(), StepError> {
    let p = cx.deps();
    p.airline.cancel(p.started, booking).await;
    Ok(())
}

#[saga_step(compensate = cancel_hotel, timeout = "5s", retries = 2, backoff = "10ms")]
async fn book_hotel(trip: &Trip, cx: &StepCx<Providers>) -> Result<Booking, StepError> {
    let p = cx.deps();
    let reference = format!("3 nights in Tokyo for {}", trip.traveller);
    Ok(p.hotel.book(p.started, reference).await)
}

async fn cancel_hotel(
    _trip: &Trip,
    cx: &StepCx<Providers>,
    booking: Booking,
) -> Result<(), StepError> {
    let p = cx.deps();
    p.hotel.cancel(p.started, booking).await;
    Ok(())
}

#[saga_step(compensate = cancel_car, timeout = "5s", retries = 2, backoff = "10ms")]
async fn book_car(trip: &Trip, cx: &StepCx<Providers>) -> Result<Booking, StepError> {
    let p = cx.deps();
    if !p.cars_available {
        tokio::time::sleep(Duration::from_millis(100)).await;
        println!(
            "  {:>4} ms  {}: attempt {}: no cars available",
            ms(p.started),
            p.car_rental.name,
            cx.attempt()
        );
        // Permanent: retrying will not conjure a car, so the step fails at once.
        return Err(StepError::permanent("no cars available at NRT"));
    }
    let reference = format!("compact car at NRT for {}", trip.traveller);
    Ok(p.car_rental.book(p.started, reference).await)
}

async fn cancel_car(
    _trip: &Trip,
    cx: &StepCx<Providers>,
    booking: Booking,
) -> Result<(), StepError> {
    let p = cx.deps();
    p.car_rental.cancel(p.started, booking).await;
    Ok(())
}

/// Takes what the three bookings returned.
#[saga_step]
async fn confirm_trip(
    trip: &mut Trip,
    cx: &StepCx<Providers>,
    flight: Output<book_flight>,
    hotel: Output<book_hotel>,
    car: Output<book_car>,
) -> Result<(), StepError> {
    let confirmation = format!(
        "{}; {}; {}",
        flight.reference, hotel.reference, car.reference
    );
    println!(
        "  {:>4} ms  confirmed: {confirmation}",
        ms(cx.deps().started)
    );
    trip.confirmation = Some(confirmation);
    Ok(())
}

saga! {
    /// Books a whole trip or nothing: flight, hotel and car at once, then the confirmation.
    pub TravelSaga(Trip, Providers) {
        parallel(book_flight, book_hotel, book_car),
        confirm_trip,
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
        started: Instant::now(),
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
