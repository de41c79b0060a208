//! Order fulfilment: reserve inventory, charge payment, send the confirmation email.
//!
//! `cargo run --example order_saga` completes an order, recorded in the SQLite file
//! `order_saga.db` in the current directory (`--db PATH` to change it, `--memory` to keep it in
//! memory), which `saga --db order_saga.db list` then shows; `cargo run --example order_saga --
//! --fail-payment` makes the payment fail for good and shows the compensation; `--mermaid`
//! prints the saga as a Mermaid flowchart.
//!
//! `cargo run --example order_saga -- --postgres URL --workers 3 [--orders 30]` starts three
//! worker processes on the PostgreSQL database at URL, enqueues the orders from this process
//! (which runs none), and reports which worker ran each order and how many orders a second the
//! workers completed (see `order_workers.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use saga_runtime::{saga, saga_step, Output, SagaEventKind, SagaOutcome, StepCx, StepError};
use serde::{Deserialize, Serialize};

#[path = "order_workers.rs"]
mod workers;

/// The order: what is persisted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrderCtx {
    order_id: String,
    amount_cents: u64,
    reservation: Option<String>,
    payment: Option<String>,
    email_sent: bool,
    /// The worker process that finished the order, when there are several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handled_by: Option<String>,
}

impl OrderCtx {
    /// A new order.
    pub fn new(order_id: &str, amount_cents: u64) -> Self {
        OrderCtx {
            order_id: order_id.into(),
            amount_cents,
            ..OrderCtx::default()
        }
    }
}

/// Clients of the inventory, payment and email services; never persisted. The services here
/// are fakes that keep what was done to them, each keyed so that a request sent twice (a step
/// run again after a crash) takes effect once, as real ones do with idempotency keys.
#[derive(Debug, Default)]
pub struct Services {
    fail_payment: bool,
    payment_calls: AtomicU32,
    /// Stock held, by reservation.
    reservations: Mutex<BTreeSet<String>>,
    /// Amounts charged, by payment.
    payments: Mutex<BTreeMap<String, u64>>,
    /// Confirmations sent, by order.
    emails: Mutex<BTreeSet<String>>,
    /// The worker process these run in, when there are several.
    worker: Option<String>,
    /// Whether the steps keep quiet (many orders).
    quiet: bool,
}

impl Services {
    /// The services; with `fail_payment`, the payment gateway is unavailable twice, then
    /// declines the card.
    pub fn new(fail_payment: bool) -> Self {
        Services {
            fail_payment,
            ..Services::default()
        }
    }

    /// What the steps did to the services: stock held, amounts charged, confirmations sent.
    pub fn effects(&self) -> (BTreeSet<String>, BTreeMap<String, u64>, BTreeSet<String>) {
        (
            lock(&self.reservations).clone(),
            lock(&self.payments).clone(),
            lock(&self.emails).clone(),
        )
    }

    /// What a step did, for the reader.
    fn say(&self, what: std::fmt::Arguments<'_>) {
        match (&self.worker, self.quiet) {
            (_, true) => {}
            (Some(worker), false) => println!("  [{worker}] {what}"),
            (None, false) => println!("  {what}"),
        }
    }
}

/// A fake service's state (a step that panicked while holding it left it whole: each change is
/// one insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[saga_step(compensate = release_inventory, timeout = "5s", retries = 2, backoff = "50ms")]
async fn reserve_inventory(ctx: &mut OrderCtx, cx: &StepCx<Services>) -> Result<(), StepError> {
    let reservation = format!("res-{}", cx.idempotency_key());
    lock(&cx.deps().reservations).insert(reservation.clone());
    ctx.reservation = Some(reservation);
    cx.deps().say(format_args!(
        "reserve_inventory: reserved stock for {}",
        ctx.order_id
    ));
    Ok(())
}

async fn release_inventory(ctx: &mut OrderCtx, cx: &StepCx<Services>) -> Result<(), StepError> {
    let reservation = ctx.reservation.take().unwrap_or_default();
    lock(&cx.deps().reservations).remove(&reservation);
    cx.deps()
        .say(format_args!("release_inventory: released {reservation}"));
    Ok(())
}

/// What the payment service answered: `charge_payment`'s output, recorded with its completion
/// and handed to `refund_payment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentProcessed {
    /// The payment to refund.
    pub payment_id: String,
    /// How much was charged.
    pub amount_cents: u64,
}

#[saga_step(compensate = refund_payment, timeout = "10s", retries = 2, backoff = "50ms")]
async fn charge_payment(
    ctx: &mut OrderCtx,
    cx: &StepCx<Services>,
) -> Result<PaymentProcessed, StepError> {
    let call = cx.deps().payment_calls.fetch_add(1, Ordering::SeqCst) + 1;
    if cx.deps().fail_payment {
        cx.deps().say(format_args!(
            "charge_payment: attempt {} declined",
            cx.attempt()
        ));
        // The first declines look transient; the last one is final.
        return Err(if call < 3 {
            StepError::transient("payment gateway unavailable")
        } else {
            StepError::permanent("card declined")
        });
    }
    let payment = format!("pay-{}", ctx.order_id);
    lock(&cx.deps().payments).insert(payment.clone(), ctx.amount_cents);
    ctx.payment = Some(payment.clone());
    cx.deps().say(format_args!(
        "charge_payment: charged {} cents",
        ctx.amount_cents
    ));
    Ok(PaymentProcessed {
        payment_id: payment,
        amount_cents: ctx.amount_cents,
    })
}

/// Receives what `charge_payment` returned, read back from the store after a crash.
async fn refund_payment(
    ctx: &mut OrderCtx,
    cx: &StepCx<Services>,
    payment: PaymentProcessed,
) -> Result<(), StepError> {
    lock(&cx.deps().payments).remove(&payment.payment_id);
    ctx.payment = None;
    cx.deps().say(format_args!(
        "refund_payment: refunded {} ({} cents)",
        payment.payment_id, payment.amount_cents
    ));
    Ok(())
}

/// Takes what `charge_payment` returned, to put the payment in the email.
#[saga_step(timeout = "5s", retries = 3)]
async fn send_confirmation_email(
    ctx: &mut OrderCtx,
    cx: &StepCx<Services>,
    payment: Output<charge_payment>,
) -> Result<(), StepError> {
    lock(&cx.deps().emails).insert(ctx.order_id.clone());
    ctx.email_sent = true;
    ctx.handled_by = cx.deps().worker.clone();
    cx.deps().say(format_args!(
        "send_confirmation_email: sent for {} (payment {})",
        ctx.order_id, payment.payment_id
    ));
    Ok(())
}

saga! {
    /// Order fulfilment.
    pub OrderSaga(OrderCtx, Services) {
        reserve_inventory,
        charge_payment,
        send_confirmation_email,
    }
}

#[tokio::main]
async fn main() -> Result<(), saga_runtime::SagaError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--postgres") {
        return workers::main(&args, at).await;
    }
    if args.iter().any(|a| a == "--mermaid") {
        // The definition as a Mermaid flowchart, for documentation.
        print!("{}", <OrderSaga as saga_runtime::Saga>::mermaid());
        return Ok(());
    }
    let fail_payment = std::env::args().any(|a| a == "--fail-payment");
    print!("{}", OrderSaga::description());
    if !args.iter().any(|a| a == "--memory") {
        // Durable: the saga survives this process, and `saga --db PATH ...` can look at it.
        let path = args
            .iter()
            .position(|a| a == "--db")
            .and_then(|at| args.get(at + 1))
            .map_or("order_saga.db", String::as_str);
        let engine = saga_runtime::Engine::builder()
            .sqlite(path)?
            .register::<OrderSaga>(Services::default())
            .build();
        // Whatever an earlier run left unfinished (it was killed) goes on now.
        let recovered = engine.recover().await?;
        let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
        println!(
            "sagas recorded in {} ({} resumed from an earlier run)",
            shown.display(),
            recovered.resumed.len()
        );
        if engine.make_global().is_err() {
            eprintln!("the global engine was set already; this run stays in memory");
        }
    }

    let ctx = OrderCtx::new("order-42", 4_200);
    let services = Services::new(fail_payment);
    println!(
        "running OrderSaga{}",
        if fail_payment {
            " (payment will fail)"
        } else {
            ""
        }
    );
    let outcome = OrderSaga::run_with(ctx, services).await?;
    match &outcome {
        SagaOutcome::Completed { id, ctx, .. } => {
            println!("order completed (saga {id}): {ctx:?}");
            if let Ok(Some(payment)) = outcome.output::<charge_payment>() {
                println!("charge_payment returned {payment:?}");
            }
        }
        SagaOutcome::Compensated { id, cause, ctx, .. } => {
            println!("order compensated (saga {id}): {cause}");
            println!("final context: {ctx:?}");
        }
        other => println!("order needs attention: {other:?}"),
    }
    println!("timeline:");
    for event in OrderSaga::on(saga_runtime::Engine::global())
        .history(outcome.id())
        .await?
    {
        match event.kind {
            SagaEventKind::StepStarted {
                step,
                phase,
                attempt,
            } => {
                println!("  {phase:?} {step} started (attempt {attempt})")
            }
            SagaEventKind::RetryScheduled {
                step,
                attempt,
                delay,
                error,
                ..
            } => {
                println!("  {step} attempt {attempt} failed ({error}); retry in {delay:?}")
            }
            SagaEventKind::StepFailed { step, error, .. } => println!("  {step} failed: {error}"),
            SagaEventKind::CompensationStarted { .. } => println!("  compensation started"),
            SagaEventKind::StepCompensated { step, .. } => println!("  {step} compensated"),
            other => println!("  {other:?}"),
        }
    }
    let status = OrderSaga::status(outcome.id()).await?;
    println!("status: {status}");
    Ok(())
}
