//! The saga metrics in Prometheus's text format: `cargo run --example metrics_prometheus`.
//!
//! Installs the Prometheus recorder (before any saga runs: each saga type registers its metrics
//! at its first saga), runs 20 shipments of which 5 are refused by the carrier and compensated,
//! then prints what a scrape of `/metrics` would return. A service serves the same text with
//! the exporter's HTTP listener (its `http-listener` feature) or from its own web framework:
//! `handle.render()` is the whole body.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use saga_runtime::{saga, saga_step, Engine, StepCx, StepError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Shipment {
    number: u32,
    booked: bool,
    labelled: bool,
}

#[saga_step(compensate = cancel_booking, retries = 2, backoff = "10ms")]
async fn book_carrier(shipment: &mut Shipment, cx: &StepCx) -> Result<(), StepError> {
    // The carrier's API is busy for every third shipment's first attempt.
    if shipment.number.is_multiple_of(3) && cx.attempt() == 1 {
        return Err(StepError::transient("carrier busy"));
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    shipment.booked = true;
    Ok(())
}

async fn cancel_booking(shipment: &mut Shipment, _cx: &StepCx) -> Result<(), StepError> {
    shipment.booked = false;
    Ok(())
}

#[saga_step]
async fn print_label(shipment: &mut Shipment) -> Result<(), StepError> {
    if shipment.number.is_multiple_of(4) {
        return Err(StepError::permanent("address refused"));
    }
    shipment.labelled = true;
    Ok(())
}

saga! { ShipmentSaga(Shipment, ()) { book_carrier, print_label } }

/// Runs the shipments and returns the metrics as a scrape would see them.
pub async fn shipments_then_scrape() -> Result<String, Box<dyn std::error::Error>> {
    // Durations as histograms with these buckets (in seconds), rather than the exporter's
    // default summaries.
    let buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)?
        .install_recorder()?;
    let engine = Engine::in_memory();
    let mut completed = 0;
    for number in 1..=20 {
        let shipment = Shipment {
            number,
            ..Shipment::default()
        };
        completed += ShipmentSaga::on(&engine)
            .run(shipment)
            .await?
            .is_completed() as u32;
    }
    Ok(format!(
        "# {completed} of 20 shipments completed\n{}",
        handle.render()
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", shipments_then_scrape().await?);
    Ok(())
}
