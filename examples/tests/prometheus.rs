//! The Prometheus example's scrape, as Prometheus would read it: 20 shipments, 5 compensated
//! (every fourth refused at `print_label`), 6 retries of `book_carrier` (every third shipment's
//! first attempt), and the durations as histograms' counts.

#[path = "../metrics_prometheus.rs"]
#[allow(dead_code)]
mod example;

#[tokio::test(flavor = "current_thread")]
async fn the_scrape_counts_every_shipment() {
    let scrape = example::shipments_then_scrape().await.unwrap();
    let sample = |line: &str| {
        scrape
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no `{line}` in:\n{scrape}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let saga = r#"{saga_type="ShipmentSaga"}"#;
    assert_eq!(sample(&format!("saga_started_total{saga} ")), "20");
    assert_eq!(sample(&format!("saga_completed_total{saga} ")), "15");
    assert_eq!(sample(&format!("saga_compensated_total{saga} ")), "5");
    assert_eq!(
        sample(r#"saga_step_retries_total{saga_type="ShipmentSaga",step="book_carrier"} "#),
        "6"
    );
    assert_eq!(
        sample(r#"saga_duration_seconds_count{saga_type="ShipmentSaga",outcome="completed"} "#),
        "15"
    );
    assert_eq!(
        sample(
            r#"saga_step_duration_seconds_count{saga_type="ShipmentSaga",step="undo:book_carrier"} "#
        ),
        "5"
    );
    assert!(
        scrape.contains("# HELP saga_completed_total Sagas that completed every step"),
        "{scrape}"
    );
}
