//! An order process split into three services, each its own process, over the local NATS
//! server: `orders`, `payments` and `inventory`. Run the whole demo (it starts the three
//! processes and shows what each prints):
//!
//!     cargo run --example shop -- demo                      # orchestrated: orders runs the saga
//!     cargo run --example shop -- demo --choreographed      # no coordinator: events only
//!
//! or each service in a terminal of its own (`--choreographed` on all three, or on none):
//!
//!     cargo run --example shop -- inventory
//!     cargo run --example shop -- payments
//!     cargo run --example shop -- orders
//!
//! The orders service places three orders; the payments service declines the second (its amount
//! is over the card's limit), so its stock is released again: by the orders service's saga
//! (orchestrated: reserve and charge are remote steps, their compensations remote too), or by
//! the inventory service reacting to the failure (choreographed). `SAGA_NATS_URL` names the
//! server (default `nats://127.0.0.1:4222`); `--namespace NAME` keeps runs apart.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use saga_runtime::bus::{Bus, NatsBusOptions};
use saga_runtime::choreography::{Event, HandlerCx, Tracker};
use saga_runtime::remote::{Command as RemoteCommand, Participant, ParticipantCx};
use saga_runtime::{
    choreography, saga, saga_handler, saga_step, Engine, Output, SagaOutcome, SagaStatus, StepError,
};
use serde::{Deserialize, Serialize};

/// The card's limit: a larger charge is declined.
const LIMIT: u64 = 100;

/// The orders the orders service places: (order, amount).
const ORDERS: [(&str, u64); 3] = [("order-1", 40), ("order-2", 250), ("order-3", 75)];

// ---- The commands and replies (orchestrated) ---------------------------------------------------

/// Reserve stock for an order (inventory).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reserve {
    order: String,
}

/// A reservation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reservation {
    id: String,
}

impl RemoteCommand for Reserve {
    const SERVICE: &'static str = "inventory";
    const ACTION: &'static str = "reserve";
    type Reply = Reservation;
}

/// Release a reservation (inventory): `Reserve`'s compensation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Release {
    reservation: String,
}

impl RemoteCommand for Release {
    const SERVICE: &'static str = "inventory";
    const ACTION: &'static str = "release";
    type Reply = ();
}

/// Charge an order (payments).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charge {
    order: String,
    amount: u64,
}

/// A payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    id: String,
}

impl RemoteCommand for Charge {
    const SERVICE: &'static str = "payments";
    const ACTION: &'static str = "charge";
    type Reply = Payment;
}

/// Refund a payment (payments): `Charge`'s compensation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refund {
    payment: String,
}

impl RemoteCommand for Refund {
    const SERVICE: &'static str = "payments";
    const ACTION: &'static str = "refund";
    type Reply = ();
}

// ---- The orchestrated saga (the orders service) ------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Order {
    id: String,
    amount: u64,
    confirmed: bool,
}

/// Carried out by the inventory service.
#[saga_step(remote, compensate = release, timeout = "10s", retries = 3)]
async fn reserve(order: &Order) -> Result<Reserve, StepError> {
    Ok(Reserve {
        order: order.id.clone(),
    })
}

/// Undone by the inventory service, from the reservation it made.
async fn release(_order: &Order, reservation: Reservation) -> Result<Release, StepError> {
    Ok(Release {
        reservation: reservation.id,
    })
}

/// Carried out by the payments service.
#[saga_step(remote, compensate = refund, timeout = "10s", retries = 3)]
async fn charge(order: &Order) -> Result<Charge, StepError> {
    Ok(Charge {
        order: order.id.clone(),
        amount: order.amount,
    })
}

/// Undone by the payments service.
async fn refund(_order: &Order, payment: Payment) -> Result<Refund, StepError> {
    Ok(Refund {
        payment: payment.id,
    })
}

/// Here, in the orders service.
#[saga_step]
async fn confirm(order: &mut Order, payment: Output<charge>) -> Result<(), StepError> {
    println!("confirm {} (paid by {})", order.id, payment.id);
    order.confirmed = true;
    Ok(())
}

saga! {
    ShopSaga(Order) { reserve, charge, confirm }
}

// ---- The participants' handlers (orchestrated) -------------------------------------------------

#[saga_handler]
async fn reserve_stock(command: Reserve, _cx: ParticipantCx<()>) -> Result<Reservation, StepError> {
    println!("reserve stock for {}", command.order);
    Ok(Reservation {
        id: format!("res-{}", command.order),
    })
}

#[saga_handler]
async fn release_stock(command: Release, _cx: ParticipantCx<()>) -> Result<(), StepError> {
    println!("release {} (compensation)", command.reservation);
    Ok(())
}

#[saga_handler]
async fn charge_card(command: Charge, _cx: ParticipantCx<()>) -> Result<Payment, StepError> {
    if command.amount > LIMIT {
        println!(
            "decline {} ({} is over the limit of {LIMIT})",
            command.order, command.amount
        );
        return Err(StepError::permanent("card declined: over the limit"));
    }
    println!("charge {} ({})", command.order, command.amount);
    Ok(Payment {
        id: format!("pay-{}", command.order),
    })
}

#[saga_handler]
async fn refund_card(command: Refund, _cx: ParticipantCx<()>) -> Result<(), StepError> {
    println!("refund {} (compensation)", command.payment);
    Ok(())
}

// ---- The choreographed flow ---------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order: String,
    amount: u64,
}

impl Event for OrderPlaced {
    const NAME: &'static str = "order.placed";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StockReserved {
    order: String,
    amount: u64,
    reservation: String,
}

impl Event for StockReserved {
    const NAME: &'static str = "stock.reserved";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentTaken {
    order: String,
    payment: String,
}

impl Event for PaymentTaken {
    const NAME: &'static str = "payment.taken";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderConfirmed {
    order: String,
}

impl Event for OrderConfirmed {
    const NAME: &'static str = "order.confirmed";
}

/// Inventory, on an order placed.
#[saga_handler(compensate = put_back)]
async fn set_aside(event: OrderPlaced, _cx: &HandlerCx<()>) -> Result<StockReserved, StepError> {
    println!("reserve stock for {}", event.order);
    Ok(StockReserved {
        reservation: format!("res-{}", event.order),
        order: event.order,
        amount: event.amount,
    })
}

async fn put_back(
    _event: OrderPlaced,
    reserved: StockReserved,
    _cx: &HandlerCx<()>,
) -> Result<(), StepError> {
    println!("release {} (compensation)", reserved.reservation);
    Ok(())
}

/// Payments, on stock reserved.
#[saga_handler(compensate = pay_back)]
async fn take_payment(
    event: StockReserved,
    _cx: &HandlerCx<()>,
) -> Result<PaymentTaken, StepError> {
    if event.amount > LIMIT {
        println!(
            "decline {} ({} is over the limit of {LIMIT})",
            event.order, event.amount
        );
        return Err(StepError::permanent("card declined: over the limit"));
    }
    println!("charge {} ({})", event.order, event.amount);
    Ok(PaymentTaken {
        payment: format!("pay-{}", event.order),
        order: event.order,
    })
}

async fn pay_back(
    _event: StockReserved,
    taken: PaymentTaken,
    _cx: &HandlerCx<()>,
) -> Result<(), StepError> {
    println!("refund {} (compensation)", taken.payment);
    Ok(())
}

/// Orders, on the payment taken: the last step, nothing to undo.
#[saga_handler(nothing_to_undo)]
async fn confirm_order(
    event: PaymentTaken,
    _cx: &HandlerCx<()>,
) -> Result<OrderConfirmed, StepError> {
    println!("confirm {} (paid by {})", event.order, event.payment);
    Ok(OrderConfirmed { order: event.order })
}

choreography! {
    /// An order, from placed to confirmed, with no coordinator.
    ShopFlow(OrderPlaced => OrderConfirmed) {
        inventory: set_aside,
        payments: take_payment,
        orders: confirm_order,
    }
}

// ---- The processes -----------------------------------------------------------------------------

struct Args {
    role: String,
    choreographed: bool,
    namespace: String,
}

fn args() -> Args {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_else(|| "demo".into());
    let (mut choreographed, mut namespace) = (false, "shop".to_string());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--choreographed" => choreographed = true,
            "--namespace" => namespace = args.next().expect("--namespace NAME"),
            other => panic!("unknown argument {other}"),
        }
    }
    Args {
        role,
        choreographed,
        namespace,
    }
}

async fn bus(namespace: &str) -> Arc<dyn Bus> {
    let url = std::env::var("SAGA_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let bus = NatsBusOptions::new(&url)
        .namespace(namespace)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the NATS server at {url}: {e}"));
    Arc::new(bus)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    if args.role == "demo" {
        return demo(args.choreographed);
    }
    let bus = bus(&args.namespace).await;
    match (args.role.as_str(), args.choreographed) {
        ("inventory", false) => {
            let service = Participant::new(bus, "inventory", ())
                .handler::<reserve_stock>()
                .handler::<release_stock>();
            println!("ready");
            service.run().await?;
        }
        ("payments", false) => {
            let service = Participant::new(bus, "payments", ())
                .handler::<charge_card>()
                .handler::<refund_card>();
            println!("ready");
            service.run().await?;
        }
        ("inventory", true) => {
            println!("ready");
            ShopFlow::inventory(bus, ()).run().await?;
        }
        ("payments", true) => {
            println!("ready");
            ShopFlow::payments(bus, ()).run().await?;
        }
        ("orders", false) => orchestrate(bus, &args.namespace).await?,
        ("orders", true) => choreograph(bus, &args.namespace).await?,
        (other, _) => panic!("unknown role {other}: demo, orders, payments or inventory"),
    }
    Ok(())
}

/// The orders service, orchestrated: runs one saga per order on a SQLite file.
async fn orchestrate(bus: Arc<dyn Bus>, namespace: &str) -> Result<(), Box<dyn std::error::Error>> {
    let db = std::env::temp_dir().join(format!("shop-{namespace}.db"));
    let engine = Engine::builder().sqlite(&db)?.bus(bus).build();
    for (id, amount) in ORDERS {
        let order = Order {
            id: id.into(),
            amount,
            confirmed: false,
        };
        println!("place {id} ({amount})");
        match ShopSaga::on(&engine).run(order).await? {
            SagaOutcome::Completed { .. } => println!("{id}: completed"),
            SagaOutcome::Compensated { cause, .. } => println!("{id}: compensated ({cause})"),
            other => println!("{id}: {other:?}"),
        }
    }
    Ok(())
}

/// The orders service, choreographed: places the orders as events, confirms paid ones, and
/// tracks every saga into a store to report how it ended.
async fn choreograph(bus: Arc<dyn Bus>, namespace: &str) -> Result<(), Box<dyn std::error::Error>> {
    let db = std::env::temp_dir().join(format!("shop-{namespace}-flow.db"));
    let engine = Engine::builder().sqlite(&db)?.build();
    let orders = tokio::spawn(ShopFlow::orders(bus.clone(), ()).run());
    let tracker = tokio::spawn(Tracker::new(bus.clone(), &engine).flow::<ShopFlow>().run());
    for (id, amount) in ORDERS {
        println!("place {id} ({amount})");
        let event = OrderPlaced {
            order: id.into(),
            amount,
        };
        let saga = ShopFlow::start(&*bus, event).await?;
        let status = loop {
            match ShopFlow::status(&engine, saga).await? {
                Some(status) if status.is_terminal() => break status,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        match status {
            SagaStatus::Completed => println!("{id}: completed"),
            SagaStatus::Compensated => {
                let history = engine.history(saga).await?;
                let cause = history.iter().find_map(|e| match &e.kind {
                    saga_runtime::SagaEventKind::StepFailed { step, error, .. } => {
                        Some(format!("{step} failed: {error}"))
                    }
                    _ => None,
                });
                println!("{id}: compensated ({})", cause.unwrap_or_default());
            }
            other => println!("{id}: {}", other.name()),
        }
    }
    orders.abort();
    tracker.abort();
    Ok(())
}

/// Starts the three services as processes of this program, runs the orders, and prints what
/// each process printed, prefixed with its name.
fn demo(choreographed: bool) -> Result<(), Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let namespace = format!("shop-{}", std::process::id());
    let mode: &[&str] = match choreographed {
        true => &["--choreographed"],
        false => &[],
    };
    let start = |role: &str| {
        Command::new(&me)
            .arg(role)
            .args(mode)
            .args(["--namespace", &namespace])
            .stdout(Stdio::piped())
            .spawn()
    };
    let mut services = Vec::new();
    for role in ["inventory", "payments"] {
        let mut child = start(role)?;
        let stdout = child.stdout.take().expect("piped");
        services.push((role, child, forward(role, stdout)));
    }
    // Each service says `ready` once it listens; the orders start once both do.
    for (_, _, ready) in &mut services {
        ready.recv()?;
    }
    let mut orders = start("orders")?;
    let stdout = orders.stdout.take().expect("piped");
    let printed = forward("orders", stdout);
    let status = orders.wait()?;
    while printed.recv().is_ok() {}
    std::thread::sleep(Duration::from_millis(200));
    for (_, mut child, _) in services {
        child.kill()?;
        child.wait()?;
    }
    match status.success() {
        true => Ok(()),
        false => Err(format!("the orders service failed: {status}").into()),
    }
}

/// Prints each line `stdout` gives, prefixed with `role`; a message on the channel for `ready`
/// and for every line after it.
fn forward(role: &'static str, stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<()> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line != "ready" {
                println!("{role:>9} | {line}");
            }
            let _ = tx.send(());
        }
    });
    rx
}
