//! The order saga the remote-step tests run: reserve (local), charge (carried out by the payments
//! service, refunded by it), allocate (carried out by the inventory service, restocked by it),
//! ship (local); the services' handlers; one ledger of what each side did, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_runtime::bus::{Bus, BusError};
use saga_runtime::remote::{Command, Participant, ParticipantCx};
use saga_runtime::{saga, saga_handler, saga_step, Output, StepCx, StepError};
use serde::{Deserialize, Serialize};

use crate::payments::{Charge, Payment, Refund};

/// What happened, in order, on either side.
#[derive(Default)]
pub struct Ledger(Mutex<Vec<String>>);

impl Ledger {
    /// Notes what happened.
    pub fn note(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }

    /// What happened so far.
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Order {
    /// The amount charged.
    pub total: u64,
    /// How the payments service treats the charge: "ok", "decline", "busy-once", "slow-once"
    /// (1.5 s on the first attempt), "slow" (700 ms on every attempt).
    pub payment: String,
    /// The inventory service has none left: `allocate` fails for good.
    pub sold_out: bool,
    /// `ship` fails for good.
    pub no_courier: bool,
    /// The payment the order shipped with.
    pub shipped: Option<String>,
}

/// Set an item aside in the warehouse: carried out by the inventory service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Allocate {
    /// None left.
    pub sold_out: bool,
}

impl Command for Allocate {
    const SERVICE: &'static str = "inventory";
    const ACTION: &'static str = "allocate";
    type Reply = ();
}

/// Put the item back: `Allocate`'s compensation, carried out by the inventory service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restock;

impl Command for Restock {
    const SERVICE: &'static str = "inventory";
    const ACTION: &'static str = "restock";
    type Reply = ();
}

/// Reserves the order here.
#[saga_step(compensate = release)]
pub async fn reserve(_order: &mut Order, cx: &StepCx<Arc<Ledger>>) -> Result<(), StepError> {
    cx.deps().note("orders: reserve".into());
    Ok(())
}

/// Releases the reservation.
pub async fn release(_order: &mut Order, cx: &StepCx<Arc<Ledger>>) -> Result<(), StepError> {
    cx.deps().note("orders: release".into());
    Ok(())
}

/// Carried out by the payments service: builds the command.
#[saga_step(remote, compensate = refund, timeout = "1s", retries = 2, backoff = "10ms")]
pub async fn charge(order: &Order, _cx: &StepCx<Arc<Ledger>>) -> Result<Charge, StepError> {
    Ok(Charge {
        amount: order.total,
        behaviour: order.payment.clone(),
    })
}

/// Undone by the payments service too: builds its command from the recorded payment.
pub async fn refund(
    _order: &Order,
    _cx: &StepCx<Arc<Ledger>>,
    payment: Payment,
) -> Result<Refund, StepError> {
    Ok(Refund {
        payment: payment.id,
        amount: payment.amount,
    })
}

/// Carried out by the inventory service.
#[saga_step(remote, compensate = restock)]
pub async fn allocate(order: &Order) -> Result<Allocate, StepError> {
    Ok(Allocate {
        sold_out: order.sold_out,
    })
}

/// Undone by the inventory service.
pub async fn restock(_order: &Order) -> Result<Restock, StepError> {
    Ok(Restock)
}

/// Ships with the payment's id.
#[saga_step]
pub async fn ship(
    order: &mut Order,
    cx: &StepCx<Arc<Ledger>>,
    payment: Output<charge>,
) -> Result<(), StepError> {
    if order.no_courier {
        cx.deps().note("orders: ship refused".into());
        return Err(StepError::permanent("no courier"));
    }
    cx.deps()
        .note(format!("orders: ship paid by {}", payment.id));
    order.shipped = Some(payment.id.clone());
    Ok(())
}

saga! {
    /// The order saga.
    pub Checkout(Order, Arc<Ledger>) { reserve, charge, allocate, ship }
}

/// The payments service's handler.
#[saga_handler]
pub async fn take_payment(
    command: Charge,
    cx: ParticipantCx<Arc<Ledger>>,
) -> Result<Payment, StepError> {
    let attempt = cx.attempt();
    cx.deps().note(format!(
        "payments: charge {} attempt {attempt} as {}",
        command.amount,
        cx.idempotency_key()
    ));
    match command.behaviour.as_str() {
        "decline" => return Err(StepError::permanent("card declined")),
        "busy-once" if attempt == 1 => return Err(StepError::transient("gateway busy")),
        "slow-once" if attempt == 1 => tokio::time::sleep(Duration::from_millis(1500)).await,
        "slow" => tokio::time::sleep(Duration::from_millis(700)).await,
        _ => {}
    }
    Ok(Payment {
        id: format!("pay-{attempt}"),
        amount: command.amount,
    })
}

/// The payments service's refund handler.
#[saga_handler]
pub async fn give_back(command: Refund, cx: ParticipantCx<Arc<Ledger>>) -> Result<(), StepError> {
    cx.deps().note(format!(
        "payments: refund {} of {} as {}",
        command.payment,
        command.amount,
        cx.idempotency_key()
    ));
    Ok(())
}

/// The inventory service's allocate handler.
#[saga_handler]
pub async fn set_aside(command: Allocate, cx: ParticipantCx<Arc<Ledger>>) -> Result<(), StepError> {
    if command.sold_out {
        cx.deps().note("inventory: allocate refused".into());
        return Err(StepError::permanent("sold out"));
    }
    cx.deps().note("inventory: allocate".into());
    Ok(())
}

/// The inventory service's restock handler.
#[saga_handler]
pub async fn put_back(_: Restock, cx: ParticipantCx<Arc<Ledger>>) -> Result<(), StepError> {
    cx.deps().note("inventory: restock".into());
    Ok(())
}

/// The payments and inventory services on `bus`, writing to `ledger`.
pub fn services(
    bus: &Arc<dyn Bus>,
    ledger: &Arc<Ledger>,
) -> tokio::task::JoinHandle<Result<(), BusError>> {
    let payments = Participant::new(bus.clone(), "payments", ledger.clone())
        .handler::<take_payment>()
        .handler::<give_back>();
    let inventory = Participant::new(bus.clone(), "inventory", ledger.clone())
        .handler::<set_aside>()
        .handler::<put_back>();
    tokio::spawn(async move {
        tokio::try_join!(payments.run(), inventory.run())?;
        Ok(())
    })
}

/// An order of 42 that the payments service treats as `payment` says.
pub fn order(payment: &str, no_courier: bool) -> Order {
    Order {
        total: 42,
        payment: payment.into(),
        no_courier,
        ..Order::default()
    }
}
