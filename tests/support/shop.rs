//! A choreographed order flow the choreography tests run: inventory reserves stock when an
//! order is placed, payments charge when stock is reserved, shipping ships when the payment is
//! taken; each service writes what it did to one ledger, in order, named by service.

use std::sync::{Arc, Mutex};

use saga_runtime::choreography::{Event, HandlerCx};
use saga_runtime::{choreography, saga_handler, StepError};
use serde::{Deserialize, Serialize};

/// What the services did, in order, each entry `service: what`.
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

/// An order was placed; `trouble` says what goes wrong: "" (nothing), "decline" (the payment,
/// for good), "busy-once" (the payment, once, transiently), "panic" (the payment's handler
/// panics), "no-courier" (shipping, for good).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order: String,
    /// What goes wrong.
    pub trouble: String,
}

impl Event for OrderPlaced {
    const NAME: &'static str = "order.placed";
}

/// Stock was set aside for the order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StockReserved {
    /// The order.
    pub order: String,
    /// The reservation.
    pub reservation: String,
    /// What goes wrong next.
    pub trouble: String,
}

impl Event for StockReserved {
    const NAME: &'static str = "stock.reserved";
}

/// The order was paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentTaken {
    /// The order.
    pub order: String,
    /// The payment.
    pub payment: String,
    /// What goes wrong next.
    pub trouble: String,
}

impl Event for PaymentTaken {
    const NAME: &'static str = "payment.taken";
}

/// The order left the warehouse.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderShipped {
    /// The order.
    pub order: String,
    /// The parcel.
    pub parcel: String,
}

impl Event for OrderShipped {
    const NAME: &'static str = "order.shipped";
}

/// Inventory: reserves stock for a placed order.
#[saga_handler(compensate = release_stock)]
pub async fn reserve_stock(
    event: OrderPlaced,
    cx: &HandlerCx<Arc<Ledger>>,
) -> Result<StockReserved, StepError> {
    cx.deps()
        .note(format!("inventory: reserve {}", event.order));
    Ok(StockReserved {
        reservation: format!("r-{}", event.order),
        order: event.order,
        trouble: event.trouble,
    })
}

/// Inventory: puts the stock back.
pub async fn release_stock(
    _event: OrderPlaced,
    reserved: StockReserved,
    cx: &HandlerCx<Arc<Ledger>>,
) -> Result<(), StepError> {
    cx.deps()
        .note(format!("inventory: release {}", reserved.reservation));
    Ok(())
}

/// Payments: charges for reserved stock.
#[saga_handler(compensate = refund, retries = 2, backoff = "20ms")]
pub async fn charge_card(
    event: StockReserved,
    cx: &HandlerCx<Arc<Ledger>>,
) -> Result<PaymentTaken, StepError> {
    cx.deps().note(format!(
        "payments: charge {} attempt {} as {}",
        event.order,
        cx.attempt(),
        cx.idempotency_key()
    ));
    match event.trouble.as_str() {
        "decline" => return Err(StepError::permanent("card declined")),
        "panic" => panic!("gateway answered nonsense"),
        "busy-once" if cx.attempt() == 1 => return Err(StepError::transient("gateway busy")),
        _ => {}
    }
    Ok(PaymentTaken {
        payment: format!("p-{}", event.order),
        order: event.order,
        trouble: event.trouble,
    })
}

/// Payments: gives the money back.
pub async fn refund(
    _event: StockReserved,
    taken: PaymentTaken,
    cx: &HandlerCx<Arc<Ledger>>,
) -> Result<(), StepError> {
    cx.deps().note(format!(
        "payments: refund {} as {}",
        taken.payment,
        cx.idempotency_key()
    ));
    Ok(())
}

/// Shipping: ships a paid order (the last step: nothing of it to undo).
#[saga_handler(nothing_to_undo)]
pub async fn ship_order(
    event: PaymentTaken,
    cx: &HandlerCx<Arc<Ledger>>,
) -> Result<OrderShipped, StepError> {
    if event.trouble == "no-courier" {
        cx.deps().note(format!("shipping: refused {}", event.order));
        return Err(StepError::permanent("no courier"));
    }
    cx.deps().note(format!("shipping: ship {}", event.order));
    Ok(OrderShipped {
        parcel: format!("parcel-{}", event.order),
        order: event.order,
    })
}

choreography! {
    /// Orders, from placed to shipped, with no coordinator.
    pub ShopFlow(OrderPlaced => OrderShipped) {
        inventory: reserve_stock,
        payments: charge_card,
        shipping: ship_order,
    }
}
