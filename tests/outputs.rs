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
}

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
            Some((step.to_string(), output.as_deref().cloned()))
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
async fn an_output_that_cannot_be_recorded_fails_its_step_for_good() {
    let outcome = Unrecordable::on(&Engine::in_memory())
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
}
