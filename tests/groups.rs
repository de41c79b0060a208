//! Parallel groups: the members of `parallel(..)` run at once (on a paused clock, three 1 s
//! members end at 1 s), take the context by `&` and hand what they produce to later steps as
//! outputs; a member that fails for good lets its running siblings finish, then every completed
//! member is compensated at once and the steps before the group after them; retries and
//! fallbacks work per member; results stream in the order members complete.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use saga_runtime::{
    saga, saga_step, Engine, Output, RollbackCause, SagaEventKind, SagaOutcome, SagaStatus, StepCx,
    StepError,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The trip: how long each booking takes and which one fails.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Trip {
    /// Milliseconds each of flight, hotel, car takes.
    flight_ms: u64,
    hotel_ms: u64,
    car_ms: u64,
    /// `book_car` fails for good.
    no_car: bool,
    /// `book_hotel` fails this many times (transiently) before it succeeds.
    hotel_busy: u32,
    /// `book_flight` fails for good; its fallback `book_train` stands in.
    no_flight: bool,
    /// What `confirm` was given.
    confirmed: Option<String>,
}

/// What happened, with the time (on tokio's paused clock) since the test started.
#[derive(Default)]
struct Ledger {
    start: Mutex<Option<Instant>>,
    entries: Mutex<Vec<(String, u128)>>,
}

impl Ledger {
    fn note(&self, what: impl Into<String>) {
        let start = self
            .start
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now)
            .to_owned();
        let ms = start.elapsed().as_millis();
        self.entries.lock().unwrap().push((what.into(), ms));
    }

    fn entries(&self) -> Vec<(String, u128)> {
        self.entries.lock().unwrap().clone()
    }

    /// When `what` happened.
    fn at(&self, what: &str) -> u128 {
        self.entries()
            .iter()
            .find(|(w, _)| w == what)
            .unwrap_or_else(|| panic!("{what} did not happen: {:?}", self.entries()))
            .1
    }
}

#[saga_step(compensate = refund_deposit)]
async fn take_deposit(_trip: &mut Trip, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    cx.deps().note("take_deposit");
    Ok(())
}

async fn refund_deposit(_trip: &mut Trip, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    cx.deps().note("refund_deposit");
    Ok(())
}

#[saga_step(compensate = cancel_flight, fallback = book_train)]
async fn book_flight(trip: &Trip, cx: &StepCx<Ledger>) -> Result<String, StepError> {
    tokio::time::sleep(Duration::from_millis(trip.flight_ms)).await;
    if trip.no_flight {
        cx.deps().note("book_flight failed");
        return Err(StepError::permanent("no seats"));
    }
    cx.deps().note("book_flight");
    Ok("flight LIS-NRT".into())
}

async fn cancel_flight(_trip: &Trip, cx: &StepCx<Ledger>, booked: String) -> Result<(), StepError> {
    cx.deps().note("cancel_flight started");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cx.deps().note(format!("cancelled {booked}"));
    Ok(())
}

#[saga_step(compensate = cancel_train)]
async fn book_train(_trip: &Trip, cx: &StepCx<Ledger>) -> Result<String, StepError> {
    cx.deps().note("book_train");
    Ok("train LIS-NRT".into())
}

async fn cancel_train(_trip: &Trip, cx: &StepCx<Ledger>, booked: String) -> Result<(), StepError> {
    cx.deps().note(format!("cancelled {booked}"));
    Ok(())
}

#[saga_step(compensate = cancel_hotel, retries = 3, backoff = "200ms")]
async fn book_hotel(trip: &Trip, cx: &StepCx<Ledger>) -> Result<String, StepError> {
    tokio::time::sleep(Duration::from_millis(trip.hotel_ms)).await;
    if cx.attempt() <= trip.hotel_busy {
        cx.deps().note(format!("book_hotel busy {}", cx.attempt()));
        return Err(StepError::transient("hotel busy"));
    }
    cx.deps().note("book_hotel");
    Ok("hotel Shinjuku".into())
}

async fn cancel_hotel(_trip: &Trip, cx: &StepCx<Ledger>, booked: String) -> Result<(), StepError> {
    cx.deps().note("cancel_hotel started");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cx.deps().note(format!("cancelled {booked}"));
    Ok(())
}

#[saga_step(compensate = cancel_car)]
async fn book_car(trip: &Trip, cx: &StepCx<Ledger>) -> Result<String, StepError> {
    tokio::time::sleep(Duration::from_millis(trip.car_ms)).await;
    if trip.no_car {
        cx.deps().note("book_car failed");
        return Err(StepError::permanent("no cars at NRT"));
    }
    cx.deps().note("book_car");
    Ok("car NRT".into())
}

async fn cancel_car(_trip: &Trip, cx: &StepCx<Ledger>, booked: String) -> Result<(), StepError> {
    cx.deps().note(format!("cancelled {booked}"));
    Ok(())
}

/// Takes what every member produced.
#[saga_step]
async fn confirm(
    trip: &mut Trip,
    cx: &StepCx<Ledger>,
    flight: Output<book_flight>,
    hotel: Output<book_hotel>,
    car: Output<book_car>,
) -> Result<(), StepError> {
    cx.deps().note("confirm");
    trip.confirmed = Some(format!("{} + {} + {}", *flight, *hotel, *car));
    Ok(())
}

saga! {
    /// A deposit, then flight, hotel and car at once, then a confirmation.
    Travel(Trip, Ledger) {
        take_deposit,
        parallel(book_flight, book_hotel, book_car),
        confirm,
    }
}

fn trip(flight_ms: u64, hotel_ms: u64, car_ms: u64) -> Trip {
    Trip {
        flight_ms,
        hotel_ms,
        car_ms,
        ..Trip::default()
    }
}

async fn run(trip: Trip) -> (SagaOutcome<Trip, TravelStep>, Arc<Ledger>, Engine) {
    let engine = Engine::in_memory();
    let ledger = Arc::new(Ledger::default());
    ledger.note("start");
    let outcome = Travel::on(&engine)
        .run_with(trip, ledger.clone())
        .await
        .unwrap();
    (outcome, ledger, engine)
}

#[tokio::test(start_paused = true)]
async fn three_one_second_members_finish_at_one_second_and_hand_their_outputs_on() {
    let (outcome, ledger, _) = run(trip(1000, 1000, 1000)).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    for member in ["book_flight", "book_hotel", "book_car"] {
        assert_eq!(ledger.at(member), 1000, "{:?}", ledger.entries());
    }
    assert_eq!(
        ledger.at("confirm"),
        1000,
        "not 3000: the members overlapped"
    );
    assert_eq!(
        outcome.ctx().confirmed.as_deref(),
        Some("flight LIS-NRT + hotel Shinjuku + car NRT")
    );
    assert_eq!(
        outcome.output::<book_hotel>().unwrap().as_deref(),
        Some("hotel Shinjuku")
    );
}

#[tokio::test(start_paused = true)]
async fn the_history_shows_every_member_started_before_any_completed() {
    let (outcome, _, engine) = run(trip(300, 100, 200)).await;
    let history = engine.history(outcome.id()).await.unwrap();
    let steps: Vec<String> = history
        .iter()
        .filter_map(|e| match &e.kind {
            SagaEventKind::StepStarted { step, .. } => Some(format!("start {step}")),
            SagaEventKind::StepCompleted { step, .. } => Some(format!("done {step}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "start take_deposit",
            "done take_deposit",
            "start book_flight",
            "start book_hotel",
            "start book_car",
            "done book_hotel",
            "done book_car",
            "done book_flight",
            "start confirm",
            "done confirm",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_member_lets_its_siblings_finish_then_they_are_compensated_at_once() {
    let (outcome, ledger, _) = run(Trip {
        no_car: true,
        ..trip(1000, 1000, 100)
    })
    .await;
    match &outcome {
        SagaOutcome::Compensated {
            cause: RollbackCause::StepFailed { step, error },
            ..
        } => {
            assert_eq!(*step, TravelStep::BookCar);
            assert_eq!(error.message(), "no cars at NRT");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ledger.at("book_car failed"), 100);
    // The siblings running finished their attempt (documented: they are not cut short).
    assert_eq!(ledger.at("book_flight"), 1000);
    assert_eq!(ledger.at("book_hotel"), 1000);
    // Both compensations started at once and took 500 ms together, not 1000.
    assert_eq!(ledger.at("cancel_flight started"), 1000);
    assert_eq!(ledger.at("cancel_hotel started"), 1000);
    assert_eq!(ledger.at("cancelled flight LIS-NRT"), 1500);
    assert_eq!(ledger.at("cancelled hotel Shinjuku"), 1500);
    // The step before the group, after the group's compensations; the failed member is not
    // compensated (it did not complete), nor is `confirm`, which never ran.
    assert_eq!(ledger.at("refund_deposit"), 1500);
    let names: Vec<String> = ledger.entries().into_iter().map(|(w, _)| w).collect();
    let refund = names.iter().position(|w| w == "refund_deposit").unwrap();
    assert!(
        names[..refund].contains(&"cancelled flight LIS-NRT".to_owned())
            && names[..refund].contains(&"cancelled hotel Shinjuku".to_owned()),
        "{names:?}"
    );
    assert!(!names.contains(&"cancelled car NRT".to_owned()));
    assert!(!names.contains(&"confirm".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn retries_and_fallbacks_work_per_member() {
    let (outcome, ledger, engine) = run(Trip {
        hotel_busy: 2,
        no_flight: true,
        ..trip(100, 100, 500)
    })
    .await;
    assert!(outcome.is_completed(), "{outcome:?}");
    // The hotel's retries (200 ms, then 400 ms backoff, with jitter) ran while the car was
    // booked: the car did not wait for them.
    assert_eq!(ledger.at("book_hotel busy 1"), 100);
    assert_eq!(ledger.at("book_car"), 500);
    assert!(
        ledger.at("book_hotel busy 2") < ledger.at("book_car"),
        "the second attempt ran while the car was booked: {:?}",
        ledger.entries()
    );
    assert!(ledger.at("book_hotel") > ledger.at("book_hotel busy 2"));
    // The flight failed for good at 100 ms; its fallback stood in for it at once.
    assert_eq!(ledger.at("book_train"), 100);
    assert_eq!(
        outcome.ctx().confirmed.as_deref(),
        Some("train LIS-NRT + hotel Shinjuku + car NRT")
    );
    let history = engine.history(outcome.id()).await.unwrap();
    let retries = history
        .iter()
        .filter(|e| matches!(&e.kind, SagaEventKind::RetryScheduled { step, .. } if step == "book_hotel"))
        .count();
    assert_eq!(retries, 2);
}

#[tokio::test(start_paused = true)]
async fn results_stream_in_the_order_members_complete() {
    let engine = Engine::in_memory();
    let travel = Travel::on(&engine);
    let id = travel
        .start_with(trip(300, 100, 200), Arc::new(Ledger::default()))
        .await
        .unwrap();
    let steps: Vec<String> = travel
        .step_results(id)
        .map(|r| r.unwrap().step.to_string())
        .collect()
        .await;
    assert_eq!(
        steps,
        [
            "take_deposit",
            "book_hotel",
            "book_car",
            "book_flight",
            "confirm"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_status_names_the_group_by_its_first_member_while_it_is_at_work() {
    let engine = Engine::in_memory();
    let travel = Travel::on(&engine);
    let id = travel
        .start_with(trip(100, 300, 200), Arc::new(Ledger::default()))
        .await
        .unwrap();
    let running = |step| SagaStatus::Running { step };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        travel.status(id).await.unwrap(),
        running(TravelStep::BookFlight)
    );
    // The flight is booked, the hotel and the car are not: still the group (statuses only move
    // forward, so it is not named by a later member now and by the first one again later).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        travel.status(id).await.unwrap(),
        running(TravelStep::BookFlight)
    );
    assert!(travel.wait(id).await.unwrap().is_completed());
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_during_the_group_waits_for_the_members_then_rolls_back() {
    let engine = Engine::in_memory();
    let travel = Travel::on(&engine);
    let ledger = Arc::new(Ledger::default());
    ledger.note("start");
    let id = travel
        .start_with(
            Trip {
                hotel_busy: 1,
                ..trip(1000, 100, 200)
            },
            ledger.clone(),
        )
        .await
        .unwrap();
    // The hotel's first attempt failed at 100 ms; its retry is due 100 to 200 ms later (equal
    // jitter), the car ends at 200 ms and the flight at 1 s.
    tokio::time::sleep(Duration::from_millis(150)).await;
    travel.cancel(id).await.unwrap();
    let outcome = travel.wait(id).await.unwrap();
    assert!(
        matches!(
            &outcome,
            SagaOutcome::Compensated {
                cause: RollbackCause::Cancelled,
                ..
            }
        ),
        "{outcome:?}"
    );
    // The hotel, waiting for its retry, was stopped; the flight, in flight, finished and was
    // compensated with the car.
    let names: Vec<String> = ledger.entries().into_iter().map(|(w, _)| w).collect();
    assert!(!names.contains(&"book_hotel".to_owned()), "{names:?}");
    assert_eq!(ledger.at("book_flight"), 1000);
    assert!(names.contains(&"cancelled flight LIS-NRT".to_owned()));
    assert!(
        ledger.at("cancelled car NRT") >= 1000,
        "the rollback waited for the flight in flight"
    );
    assert!(!names.iter().any(|w| w.starts_with("cancelled hotel")));
    assert!(names.contains(&"refund_deposit".to_owned()));
}

#[test]
fn the_description_and_the_diagram_show_the_group_and_the_outputs() {
    let description = Travel::description();
    assert_eq!(
        description.groups,
        vec![std::ops::Range { start: 1, end: 4 }]
    );
    let text = description.to_string();
    assert!(
        text.contains(
            "  1. take_deposit, compensate = refund_deposit\n  parallel:\n    2. book_flight,"
        ),
        "{text}"
    );
    assert!(
        text.contains("    4. book_car, compensate = cancel_car\n  5. confirm"),
        "{text}"
    );
    let chart = description.mermaid();
    // The deposit leads to every member, every member to `confirm`, inside a group's box.
    for edge in [
        "s0[\"take_deposit\"] --> s1",
        "s0 --> s2",
        "s0 --> s3",
        "s2[\"book_hotel<br/>→ String\"] --> s4",
        "subgraph g1[\"parallel\"]\n        s1\n        s2\n        s3\n    end",
        // A failing member undoes its siblings (at once), then the deposit.
        "s3 -. fails .-> c2",
        "s3 -. fails .-> c1",
        "c2[/\"cancel_hotel\"/] --> c0",
        "subgraph g6[\"parallel\"]\n        c1\n        c2\n        c3\n    end",
        "s4[\"confirm<br/>← book_flight<br/>← book_hotel<br/>← book_car\"]",
    ] {
        assert!(chart.contains(edge), "{edge} in {chart}");
    }
    assert!(
        !chart.contains("s3 -. fails .-> c3"),
        "a failed member is not undone"
    );
    // Shapes recorded in a store keep the groups.
    let shape = saga_runtime::SagaShape::from(&description);
    let json = serde_json::to_string(&shape).unwrap();
    assert_eq!(
        serde_json::from_str::<saga_runtime::SagaShape>(&json).unwrap(),
        shape
    );
    assert_eq!(shape.stages(), [0..1, 1..4, 4..5]);
}

saga! {
    /// `Travel`'s steps one after another, as another version of the program might list them.
    TravelInSequence(Trip, Ledger) {
        take_deposit,
        book_flight,
        book_hotel,
        book_car,
        confirm,
    }
}

#[test]
fn a_saga_started_with_a_group_is_not_resumed_by_a_definition_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    // A worker starts a trip whose flight takes an hour, and dies.
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let engine = Engine::builder()
                .sqlite(&path)
                .unwrap()
                .worker_id("travel")
                .build();
            let id = Travel::on(&engine)
                .start_with(trip(3_600_000, 10, 10), Arc::new(Ledger::default()))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            id
        });
    // The next version of the program lists the same steps under the same name, in sequence.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute("UPDATE sagas SET saga_type = 'TravelInSequence'", [])
        .unwrap();
    drop(db);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let ledger = Arc::new(Ledger::default());
            let engine = Engine::builder()
                .sqlite(&path)
                .unwrap()
                .worker_id("travel")
                .register::<TravelInSequence>(ledger.clone())
                .build();
            let report = engine.recover().await.unwrap();
            assert_eq!(
                report.parked,
                [(
                    started,
                    "it was started with parallel groups [1..4], but this program's \
                     `TravelInSequence` has []"
                        .to_owned()
                )]
            );
            assert!(ledger.entries().is_empty(), "nothing ran");
            let refused = TravelInSequence::on(&engine)
                .wait(started)
                .await
                .unwrap_err();
            assert!(refused.to_string().contains("parallel groups"), "{refused}");
        });
}

saga! {
    /// A trip that ends with its group: every member says how it is undone.
    TripEndingInGroup(Trip, Ledger) {
        take_deposit,
        parallel(book_flight, book_hotel, book_car),
    }
}

#[tokio::test(start_paused = true)]
async fn a_saga_ending_in_a_group_cannot_be_cancelled_while_a_member_runs() {
    let engine = Engine::in_memory();
    let trips = TripEndingInGroup::on(&engine);
    let ledger = Arc::new(Ledger::default());
    ledger.note("start");
    let id = trips
        .start_with(trip(2000, 100, 100), ledger.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Only `book_flight` is at work (not the last step, but a member of the final group); once
    // it ends, nothing is left to stop: as for a last step, the request is refused rather than
    // accepted and then ignored.
    let refused = trips.cancel(id).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            saga_runtime::SagaError::Refused {
                refusal: saga_runtime::Refusal::LastStep,
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(trips.wait(id).await.unwrap().is_completed());
    assert_eq!(ledger.at("book_flight"), 2000);
}
