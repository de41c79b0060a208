//! Typed step outputs: what a step returns is recorded with its completion, appears in the
//! history and the events, reaches the step's compensation (with or without the handle) and the
//! outcome; a fallback's output stands in for its step's; an output that cannot be recorded is
//! the step's permanent failure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use saga_runtime::{
    saga, saga_step, Engine, Output, SagaEventKind, SagaOutcome, StepCx, StepError,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Order {
    /// Make `ship` fail for good.
    fail_ship: bool,
    /// Make `charge` fail for good (its fallback `charge_card` then runs).
    fail_charge: bool,
    /// The payment `ship` was given.
    shipped_after: Option<String>,
    /// `book` waits while this is in `HELD`.
    hold: Option<String>,
}

/// Holds of `book`, released by the tests.
static HELD: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// What the payment service answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Charged {
    payment_id: String,
    amount_cents: u64,
}

/// The payment service: refunds, by payment id, in the order they came; and the payments
/// `ship` was given.
#[derive(Default)]
struct Payments {
    refunds: Mutex<Vec<String>>,
    shipped_after: Mutex<Vec<String>>,
}

#[saga_step(compensate = release)]
async fn reserve(_ctx: &mut Order) -> Result<(), StepError> {
    Ok(())
}

async fn release(_ctx: &mut Order) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(compensate = refund, fallback = charge_card)]
async fn charge(ctx: &mut Order, cx: &StepCx<Payments>) -> Result<Charged, StepError> {
    if ctx.fail_charge {
        return Err(StepError::permanent("wallet empty"));
    }
    Ok(Charged {
        payment_id: format!("wallet-{}", cx.saga_id()),
        amount_cents: 4200,
    })
}

/// Receives what `charge` returned.
async fn refund(
    _ctx: &mut Order,
    cx: &StepCx<Payments>,
    charged: Charged,
) -> Result<(), StepError> {
    cx.deps().refunds.lock().unwrap().push(charged.payment_id);
    Ok(())
}

#[saga_step(compensate = refund_card)]
async fn charge_card(_ctx: &mut Order, cx: &StepCx<Payments>) -> Result<Charged, StepError> {
    Ok(Charged {
        payment_id: format!("card-{}", cx.saga_id()),
        amount_cents: 4200,
    })
}

async fn refund_card(
    _ctx: &mut Order,
    cx: &StepCx<Payments>,
    charged: Charged,
) -> Result<(), StepError> {
    cx.deps()
        .refunds
        .lock()
        .unwrap()
        .push(format!("card refund of {}", charged.payment_id));
    Ok(())
}

/// Takes what `charge` (or its fallback) returned.
#[saga_step]
async fn ship(
    ctx: &mut Order,
    cx: &StepCx<Payments>,
    charged: Output<charge>,
) -> Result<u32, StepError> {
    cx.deps()
        .shipped_after
        .lock()
        .unwrap()
        .push(charged.payment_id.clone());
    ctx.shipped_after = Some(charged.into_inner().payment_id);
    match ctx.fail_ship {
        true => Err(StepError::permanent("no truck")),
        false => Ok(7),
    }
}

saga! { Checkout(Order, Payments) { reserve, charge, ship } }

fn payments() -> Arc<Payments> {
    Arc::new(Payments::default())
}

#[tokio::test]
async fn a_compensation_receives_what_its_step_returned() {
    let engine = Engine::in_memory();
    let payments = payments();
    let outcome = Checkout::on(&engine)
        .run_with(
            Order {
                fail_ship: true,
                ..Order::default()
            },
            payments.clone(),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, SagaOutcome::Compensated { .. }),
        "{outcome:?}"
    );
    let id = outcome.id();
    assert_eq!(*payments.refunds.lock().unwrap(), [format!("wallet-{id}")]);
    // The outcome keeps what the completed steps returned.
    assert_eq!(
        outcome.output::<charge>().unwrap(),
        Some(Charged {
            payment_id: format!("wallet-{id}"),
            amount_cents: 4200
        })
    );
    assert_eq!(outcome.output::<ship>().unwrap(), None, "ship failed");
    assert!(!outcome.outputs().contains("reserve"), "() records nothing");
}

#[tokio::test]
async fn outputs_are_in_the_history_the_events_and_the_outcome() {
    let engine = Engine::in_memory();
    let mut events = engine.subscribe();
    let outcome = Checkout::on(&engine)
        .run_with(Order::default(), payments())
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(outcome.output::<ship>().unwrap(), Some(7));
    let id = outcome.id();
    assert_eq!(
        outcome.ctx().shipped_after,
        Some(format!("wallet-{id}")),
        "a later step takes an earlier one's output"
    );
    let completed = |kind: &SagaEventKind| match kind {
        SagaEventKind::StepCompleted { step, output, .. } => {
            Some((step.to_string(), output.as_ref().map(|o| o.json().clone())))
        }
        _ => None,
    };
    let history: Vec<_> = engine
        .history(id)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| completed(&e.kind))
        .collect();
    let expected = vec![
        ("reserve".to_owned(), None),
        (
            "charge".to_owned(),
            Some(serde_json::json!({ "payment_id": format!("wallet-{id}"), "amount_cents": 4200 })),
        ),
        ("ship".to_owned(), Some(serde_json::json!(7))),
    ];
    assert_eq!(history, expected);
    let mut streamed = Vec::new();
    while let Ok(event) = events.try_recv() {
        if event.saga_id == id {
            streamed.extend(completed(&event.kind));
        }
    }
    assert_eq!(streamed, expected, "subscribers see the same outputs");
}

#[tokio::test]
async fn a_fallback_returns_its_steps_output_and_its_own_compensation_receives_it() {
    let engine = Engine::in_memory();
    let payments = payments();
    let outcome = Checkout::on(&engine)
        .run_with(
            Order {
                fail_charge: true,
                fail_ship: true,
                ..Order::default()
            },
            payments.clone(),
        )
        .await
        .unwrap();
    let id = outcome.id();
    assert_eq!(
        outcome.output::<charge>().unwrap().map(|c| c.payment_id),
        Some(format!("card-{id}")),
        "the fallback's output, under its step's name"
    );
    assert_eq!(
        *payments.refunds.lock().unwrap(),
        [format!("card refund of card-{id}")]
    );
    assert_eq!(
        *payments.shipped_after.lock().unwrap(),
        [format!("card-{id}")],
        "ship was given the fallback's output"
    );
}

/// A map with keys that are not strings: serde_json cannot write it.
#[saga_step]
async fn unrecordable(_ctx: &mut Order) -> Result<BTreeMap<(u8, u8), u8>, StepError> {
    Ok(BTreeMap::from([((1, 2), 3)]))
}

saga! { Unrecordable(Order, ()) { unrecordable } }

#[tokio::test]
async fn an_output_that_cannot_be_recorded_fails_its_step_for_good_on_a_durable_store() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .sqlite(dir.path().join("sagas.db"))
        .unwrap()
        .build();
    let outcome = Unrecordable::on(&engine)
        .run(Order::default())
        .await
        .unwrap();
    let SagaOutcome::Compensated { cause, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        cause
            .to_string()
            .starts_with("step `unrecordable` failed: its output cannot be recorded"),
        "{cause}"
    );
    // In memory an output is kept as the value it is, as the context is: nothing writes it,
    // and the step completes; its JSON (for the history) is `null`.
    let outcome = Unrecordable::on(&Engine::in_memory())
        .run(Order::default())
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        outcome.output::<unrecordable>().unwrap(),
        Some(BTreeMap::from([((1, 2), 3)]))
    );
    assert_eq!(
        outcome.outputs().json("unrecordable"),
        Some(&serde_json::Value::Null)
    );
}

/// Steps that take a while, in turn.
#[saga_step(nothing_to_undo)]
async fn quote(_ctx: &mut Order) -> Result<u64, StepError> {
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    Ok(4200)
}

#[saga_step(compensate = cancel_booking)]
async fn book(ctx: &mut Order, price: Output<quote>) -> Result<String, StepError> {
    while ctx
        .hold
        .as_ref()
        .is_some_and(|hold| HELD.lock().unwrap().contains(hold))
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(format!("booking at {}", *price))
}

async fn cancel_booking(_ctx: &mut Order) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn confirm(ctx: &mut Order) -> Result<(), StepError> {
    match ctx.fail_ship {
        true => Err(StepError::permanent("no confirmation")),
        false => Ok(()),
    }
}

saga! { Booking(Order, ()) { quote, book, confirm } }

/// The steps a stream of results yields: step names and outputs as JSON.
async fn collect(
    mut steps: saga_runtime::StepResults<Booking>,
) -> Vec<(String, Option<serde_json::Value>)> {
    use futures_util::StreamExt;
    let mut seen = Vec::new();
    while let Some(result) = steps.next().await {
        let result = result.unwrap();
        seen.push((result.step.to_string(), result.json().cloned()));
    }
    seen
}

#[tokio::test]
async fn step_results_stream_in_completion_order_and_end_with_the_saga() {
    use futures_util::StreamExt;
    let engine = Engine::in_memory();
    let bookings = Booking::on(&engine);
    // `book` waits until the first result has been seen.
    HELD.lock().unwrap().push("streamed".into());
    let id = bookings
        .start(Order {
            hold: Some("streamed".into()),
            ..Order::default()
        })
        .await
        .unwrap();
    let mut steps = bookings.step_results(id);
    // The first result arrives while the saga still runs.
    let first = steps.next().await.unwrap().unwrap();
    assert_eq!(first.output::<quote>().unwrap(), Some(4200));
    assert_eq!(
        first.output::<book>().unwrap(),
        None,
        "another step's result"
    );
    assert!(
        !matches!(
            bookings.status(id).await.unwrap(),
            saga_runtime::SagaStatus::Completed
        ),
        "streamed before the saga ended"
    );
    HELD.lock().unwrap().clear();
    let second = steps.next().await.unwrap().unwrap();
    assert_eq!(
        second.output::<book>().unwrap().as_deref(),
        Some("booking at 4200")
    );
    assert_eq!(second.attempt, 1);
    let third = steps.next().await.unwrap().unwrap();
    assert_eq!(
        (third.step.to_string(), third.json()),
        ("confirm".into(), None)
    );
    assert!(
        steps.next().await.is_none(),
        "the stream ends with the saga"
    );
    assert!(bookings.wait(id).await.unwrap().is_completed());

    // Asked for after the saga ended, and for a saga that rolled back.
    assert_eq!(collect(bookings.step_results(id)).await.len(), 3);
    let failed = bookings
        .start(Order {
            fail_ship: true,
            ..Order::default()
        })
        .await
        .unwrap();
    assert_eq!(
        collect(bookings.step_results(failed)).await,
        [
            ("quote".to_owned(), Some(serde_json::json!(4200))),
            (
                "book".to_owned(),
                Some(serde_json::json!("booking at 4200"))
            ),
        ],
        "the completed steps, then the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_results_follow_a_saga_another_engine_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let runner = Engine::builder()
        .sqlite(&path)
        .unwrap()
        .register::<Booking>(())
        .build();
    // Another engine on the same file that runs nothing: it only reads the store.
    let watcher = Engine::builder()
        .sqlite(&path)
        .unwrap()
        .claims(false)
        .build();
    let id = Booking::on(&runner).start(Order::default()).await.unwrap();
    let seen = collect(Booking::on(&watcher).step_results(id)).await;
    assert_eq!(
        seen.iter()
            .map(|(step, _)| step.as_str())
            .collect::<Vec<_>>(),
        ["quote", "book", "confirm"]
    );
    assert_eq!(seen[1].1, Some(serde_json::json!("booking at 4200")));
}

#[test]
fn the_description_and_the_chart_show_outputs_and_who_takes_them() {
    use saga_runtime::Saga;
    let description = Booking::description();
    assert_eq!(description.steps[0].output, Some("u64"));
    assert_eq!(description.steps[1].inputs, ["quote"]);
    assert_eq!(description.steps[2].output, None, "confirm returns ()");
    let shape = saga_runtime::SagaShape::from(&description);
    assert_eq!(shape.steps[1].output.as_deref(), Some("String"));
    let chart = Booking::mermaid();
    assert!(
        chart.contains("s1[\"book<br/>← quote<br/>→ String\"]"),
        "{chart}"
    );
    // Generic outputs are escaped for Mermaid.
    assert!(
        Unrecordable::mermaid().contains("→ BTreeMap#lt;(u8,u8),u8#gt;"),
        "{}",
        Unrecordable::mermaid()
    );
}
