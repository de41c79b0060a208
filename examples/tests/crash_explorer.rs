//! The crash explorer on the order example (which must recover from a crash at every durability
//! boundary, on its happy path and when the payment fails), and on a saga whose refund is not
//! idempotent (which it must catch, naming the boundary and the step).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use saga_runtime::testing::CrashExplorer;
use saga_runtime::{saga, saga_step, StepCx, StepError};
use serde::{Deserialize, Serialize};

#[path = "../order_saga.rs"]
#[allow(dead_code)]
mod order;

use order::{OrderCtx, OrderSaga, Services};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_saga_recovers_from_a_crash_at_every_boundary() {
    let explored =
        CrashExplorer::<OrderSaga>::new(OrderCtx::new("order-7", 4_200), || Services::new(false))
            .world(Services::effects)
            .explore()
            .await
            .unwrap_or_else(|violation| panic!("{violation}"));
    println!("{explored}");
    assert_eq!(explored.outcome, "completed");
    // Three steps: intent, effect and checkpoint each, the start, the first intent's boundary
    // before the start's commit.
    for boundary in [
        "before_intent@reserve_inventory",
        "after_start_commit@saga",
        "after_intent@reserve_inventory",
        "after_effect@charge_payment",
        "after_checkpoint@send_confirmation_email",
    ] {
        assert!(
            explored.boundaries.iter().any(|b| b == boundary),
            "{boundary} in {explored}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_saga_recovers_while_compensating_too() {
    let explored =
        CrashExplorer::<OrderSaga>::new(OrderCtx::new("order-8", 990), || Services::new(true))
            .world(Services::effects)
            .explore()
            .await
            .unwrap_or_else(|violation| panic!("{violation}"));
    println!("{explored}");
    assert_eq!(explored.outcome, "compensated");
    for boundary in [
        "after_compensation_intent@reserve_inventory",
        "after_compensation_effect@reserve_inventory",
        "after_compensation_checkpoint@reserve_inventory",
    ] {
        assert!(
            explored.boundaries.iter().any(|b| b == boundary),
            "{boundary} in {explored}"
        );
    }
}

// A saga whose charge is idempotent but whose refund is not: it credits the balance each time it
// runs.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Purchase {
    amount: i64,
}

/// The customer's balance at a payment provider, and the charges it has seen by key.
#[derive(Debug, Default)]
struct Provider {
    balance: AtomicI64,
    charges: Mutex<BTreeSet<String>>,
}

/// Idempotent: a charge whose key was seen is not taken again.
#[saga_step(compensate = refund)]
async fn charge(purchase: &mut Purchase, cx: &StepCx<Provider>) -> Result<(), StepError> {
    if cx
        .deps()
        .charges
        .lock()
        .unwrap()
        .insert(cx.idempotency_key())
    {
        cx.deps()
            .balance
            .fetch_sub(purchase.amount, Ordering::SeqCst);
    }
    Ok(())
}

/// Not idempotent: run twice (after a crash between its effect and its checkpoint), it refunds
/// twice.
async fn refund(purchase: &mut Purchase, cx: &StepCx<Provider>) -> Result<(), StepError> {
    cx.deps()
        .balance
        .fetch_add(purchase.amount, Ordering::SeqCst);
    Ok(())
}

#[saga_step]
async fn ship(_: &mut Purchase) -> Result<(), StepError> {
    Err(StepError::permanent("out of stock"))
}

saga! { Checkout(Purchase, Provider) { charge, ship } }

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_that_is_not_idempotent_is_caught_at_its_boundary() {
    let violation = CrashExplorer::<Checkout>::new(Purchase { amount: 50 }, Provider::default)
        .world(|provider: &Provider| provider.balance.load(Ordering::SeqCst))
        .explore()
        .await
        .expect_err("the double refund is caught");
    let message = violation.to_string();
    println!("{message}");
    assert_eq!(violation.boundary, Some("after_compensation_effect"));
    assert_eq!(violation.step, "charge");
    assert!(
        message.starts_with("Checkout: crash at `after_compensation_effect` of step `charge`"),
        "{message}"
    );
    assert!(
        message.contains("the world differs from a run without a crash: 50 instead of 0"),
        "{message}"
    );
    assert!(
        message.contains("`refund` ran again after the crash"),
        "{message}"
    );
}
