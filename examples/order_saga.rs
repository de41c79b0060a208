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

use std::sync::atomic::{AtomicU32, Ordering};

use saga_runtime::{saga, saga_step, SagaEventKind, SagaOutcome, StepCx, StepError};
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

/// Clients of the inventory, payment and email services; never persisted.
#[derive(Debug, Default)]
pub struct Services {
    fail_payment: bool,
    payment_calls: AtomicU32,
    /// The worker process these run in, when there are several.
    worker: Option<String>,
    /// Whether the steps keep quiet (many orders).
    quiet: bool,
}

impl Services {
    /// What a step did, for the reader.
    fn say(&self, what: std::fmt::Arguments<'_>) {
        match (&self.worker, self.quiet) {
            (_, true) => {}
            (Some(worker), false) => println!("  [{worker}] {what}"),
            (None, false) => println!("  {what}"),
        }
    }
}

#[saga_step(compensate = release_inventory, timeout = "5s", retries = 2, backoff = "50ms")]
async fn reserve_inventory(ctx: &mut OrderCtx, cx: &StepCx<Services>) -> Result<(), StepError> {
    ctx.reservation = Some(format!("res-{}", cx.idempotency_key()));
    cx.deps().say(format_args!(
        "reserve_inventory: reserved stock for {}",
        ctx.order_id
    ));
    Ok(())
}

async fn release_inventory(ctx: &mut OrderCtx, cx: &StepCx<Services>) -> Result<(), StepError> {
    cx.deps().say(format_args!(
        "release_inventory: released {}",
        ctx.reservation.take().unwrap_or_default()
    ));
    Ok(())
}

#[saga_step(compensate = refund_payment, timeout = "10s", retries = 2, backoff = "50ms")]
async fn charge_payment(ctx: &mut OrderCtx, cx: &StepCx<Services>) -> Result<(), StepError> {
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
    ctx.payment = Some(format!("pay-{}", ctx.order_id));
    cx.deps().say(format_args!(
        "charge_payment: charged {} cents",
        ctx.amount_cents
    ));
    Ok(())
}

async fn refund_payment(ctx: &mut OrderCtx, cx: &StepCx<Services>) -> Result<(), StepError> {
    cx.deps().say(format_args!(
        "refund_payment: refunded {}",
        ctx.payment.take().unwrap_or_default()
    ));
    Ok(())
}

#[saga_step(timeout = "5s", retries = 3)]
async fn send_confirmation_email(
    ctx: &mut OrderCtx,
    cx: &StepCx<Services>,
) -> Result<(), StepError> {
    ctx.email_sent = true;
    ctx.handled_by = cx.deps().worker.clone();
    cx.deps().say(format_args!(
        "send_confirmation_email: sent for {}",
        ctx.order_id
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

    let ctx = OrderCtx {
        order_id: "order-42".into(),
        amount_cents: 4_200,
        ..Default::default()
    };
    let services = Services {
        fail_payment,
        ..Default::default()
    };
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
        SagaOutcome::Completed { id, ctx } => {
            println!("order completed (saga {id}): {ctx:?}");
        }
        SagaOutcome::Compensated { id, cause, ctx } => {
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
