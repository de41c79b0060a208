//! A remote step under the rules of a local one, over both transports (in memory, and NATS
//! JetStream when `SAGA_NATS_URL` is set): its fallback stands in for it when its service fails
//! it for good, and a remote pivot is the point of no return (a later failure ends the saga
//! failed, nothing undone).

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{saga, saga_step, Engine, Output, SagaOutcome, SagaStatus, StepCx, StepError};
use saga_tests::checkout::{order, refund, reserve, services, Ledger, Order};
use saga_tests::payments::{buses, Charge, Payment};

/// Carried out by the payments service; an invoice stands in for a declined card.
#[saga_step(remote, compensate = refund, fallback = invoice, timeout = "5s")]
async fn charge_card(order: &Order, _cx: &StepCx<Arc<Ledger>>) -> Result<Charge, StepError> {
    Ok(Charge {
        amount: order.total,
        behaviour: order.payment.clone(),
    })
}

/// Here: the order is invoiced instead (nothing to undo: an unpaid invoice is void).
#[saga_step(nothing_to_undo)]
async fn invoice(order: &Order, cx: &StepCx<Arc<Ledger>>) -> Result<Payment, StepError> {
    cx.deps().note("orders: invoice".into());
    Ok(Payment {
        id: "invoice".into(),
        amount: order.total,
    })
}

#[saga_step]
async fn dispatch(
    order: &mut Order,
    cx: &StepCx<Arc<Ledger>>,
    payment: Output<charge_card>,
) -> Result<(), StepError> {
    if order.no_courier {
        cx.deps().note("orders: dispatch refused".into());
        return Err(StepError::permanent("no courier"));
    }
    cx.deps()
        .note(format!("orders: dispatch paid by {}", payment.id));
    order.shipped = Some(payment.id.clone());
    Ok(())
}

saga! {
    Invoiced(Order, Arc<Ledger>) { reserve, charge_card, dispatch }
}

/// Carried out by the payments service, for good: past it, nothing is undone.
#[saga_step(remote, pivot, timeout = "5s")]
async fn settle(order: &Order, _cx: &StepCx<Arc<Ledger>>) -> Result<Charge, StepError> {
    Ok(Charge {
        amount: order.total,
        behaviour: order.payment.clone(),
    })
}

#[saga_step]
async fn deliver(
    order: &mut Order,
    cx: &StepCx<Arc<Ledger>>,
    payment: Output<settle>,
) -> Result<(), StepError> {
    if order.no_courier {
        cx.deps().note("orders: deliver refused".into());
        return Err(StepError::permanent("no courier"));
    }
    order.shipped = Some(payment.id.clone());
    Ok(())
}

saga! {
    Settled(Order, Arc<Ledger>) { reserve, settle, deliver }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_stands_in_for_a_remote_step_its_service_failed() {
    for (name, bus) in buses("the remote rule tests on NATS", Duration::from_secs(30)).await {
        let ledger = Arc::new(Ledger::default());
        let service = services(&bus, &ledger);
        let engine = Engine::builder().bus(bus.clone()).build();
        let outcome = Invoiced::on(&engine)
            .run_with(order("decline", false), ledger.clone())
            .await
            .unwrap();
        service.abort();
        assert!(outcome.is_completed(), "{name}: {outcome:?}");
        let id = outcome.id();
        assert_eq!(
            ledger.entries(),
            [
                "orders: reserve".to_string(),
                format!("payments: charge 42 attempt 1 as {id}:charge_card"),
                "orders: invoice".to_string(),
                "orders: dispatch paid by invoice".to_string(),
            ],
            "{name}"
        );
        assert_eq!(outcome.ctx().shipped.as_deref(), Some("invoice"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_a_remote_pivot_a_failure_ends_the_saga_failed_with_nothing_undone() {
    for (name, bus) in buses("the remote rule tests on NATS", Duration::from_secs(30)).await {
        let ledger = Arc::new(Ledger::default());
        let service = services(&bus, &ledger);
        let engine = Engine::builder().bus(bus.clone()).build();
        let outcome = Settled::on(&engine)
            .run_with(order("ok", true), ledger.clone())
            .await
            .unwrap();
        service.abort();
        assert!(
            matches!(outcome, SagaOutcome::Failed { .. }),
            "{name}: {outcome:?}"
        );
        let id = outcome.id();
        assert_eq!(
            Settled::on(&engine).status(id).await.unwrap(),
            SagaStatus::Failed {
                step: SettledStep::Deliver
            },
            "{name}"
        );
        // Neither the payment refunded nor the reservation released.
        assert_eq!(
            ledger.entries(),
            [
                "orders: reserve".to_string(),
                format!("payments: charge 42 attempt 1 as {id}:settle"),
                "orders: deliver refused".to_string(),
            ],
            "{name}"
        );
    }
}
