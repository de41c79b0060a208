//! Cart checkout: a saga assembled at run time, one stock reservation per item of the cart.
//!
//! The steps are the same `#[saga_step]` functions `saga!` lists, but which ones run is only
//! known from the cart: `cart_saga` builds the definition with one instance of `reserve_item`
//! per item, all in one parallel group, then `charge_card`. Each instance reads which item is
//! its own from `cx.instance()`; its events, idempotency key (`{saga}:reserve_item[2]`) and
//! output (the reservation) are its own, and its compensation receives that reservation.
//!
//! The saga runs on a SQLite file with a worker that registered the definition by name
//! (`register_definition`), so that after a crash the worker builds the definition again from
//! the stored cart and resumes it. By default the card is declined: the reservations, made at
//! once, are released at once. With `--card-ok` the order goes through.
//!
//! ```text
//! cargo run --example cart_checkout               # card declined, every item released
//! cargo run --example cart_checkout -- --card-ok  # items reserved, card charged
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

use saga_runtime::{saga_step, BuildError, Engine, SagaDefinition, SagaOutcome, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// The cart: what is persisted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cart {
    items: Vec<String>,
    card_ok: bool,
    charged: Option<String>,
}

/// A reservation in the warehouse: `reserve_item`'s output, which `release_item` receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reservation {
    item: String,
    shelf: u32,
}

/// A fake warehouse: its reservations, in memory.
#[derive(Debug)]
pub struct Warehouse {
    started: Instant,
    reserved: Mutex<Vec<String>>,
}

impl Warehouse {
    fn log(&self, what: String) {
        println!("  {:>4} ms  {what}", self.started.elapsed().as_millis());
    }
}

/// Instance `i` reserves item `i` of the cart (200 ms round trip).
#[saga_step(compensate = release_item, retries = 2, backoff = "50ms")]
pub async fn reserve_item(cart: &Cart, cx: &StepCx<Warehouse>) -> Result<Reservation, StepError> {
    let index = cx
        .instance()
        .ok_or_else(|| StepError::permanent("reserve_item runs as one instance per item"))?;
    let item = cart
        .items
        .get(index)
        .ok_or_else(|| StepError::permanent(format!("the cart has no item {index}")))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let warehouse = cx.deps();
    warehouse.reserved.lock().unwrap().push(item.clone());
    warehouse.log(format!("reserved {item} ({})", cx.idempotency_key()));
    Ok(Reservation {
        item: item.clone(),
        shelf: 10 + index as u32,
    })
}

/// Releases what its instance reserved; releasing twice is a no-op.
async fn release_item(
    _cart: &Cart,
    cx: &StepCx<Warehouse>,
    reservation: Reservation,
) -> Result<(), StepError> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let warehouse = cx.deps();
    warehouse
        .reserved
        .lock()
        .unwrap()
        .retain(|item| *item != reservation.item);
    warehouse.log(format!(
        "released {} from shelf {}",
        reservation.item, reservation.shelf
    ));
    Ok(())
}

/// Charges the card for the whole cart.
#[saga_step]
pub async fn charge_card(cart: &mut Cart, cx: &StepCx<Warehouse>) -> Result<(), StepError> {
    if !cart.card_ok {
        cx.deps().log("card declined".into());
        return Err(StepError::permanent("card declined"));
    }
    cart.charged = Some(format!("{} items", cart.items.len()));
    cx.deps().log("card charged".into());
    Ok(())
}

/// The checkout of `cart`: one reservation per item, at once, then the charge. The worker calls
/// it again with the stored cart to resume a saga after a crash.
pub fn cart_saga(cart: &Cart) -> Result<SagaDefinition<Cart, Warehouse>, BuildError> {
    SagaDefinition::builder("CartCheckout")
        .parallel(|group| {
            for item in 0..cart.items.len() {
                group.instance::<reserve_item>(item);
            }
        })
        .step::<charge_card>()
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let card_ok = std::env::args().any(|arg| arg == "--card-ok");
    let cart = Cart {
        items: vec!["book".into(), "lamp".into(), "mug".into()],
        card_ok,
        charged: None,
    };
    let definition = cart_saga(&cart)?;
    println!("{}", definition.description());

    let dir = std::env::temp_dir().join(format!("cart-checkout-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let warehouse = Warehouse {
        started: Instant::now(),
        reserved: Mutex::new(Vec::new()),
    };
    let engine = Engine::builder()
        .sqlite(dir.join("sagas.db"))?
        .register_definition("CartCheckout", warehouse, cart_saga)
        .build();
    engine.recover().await?;

    // The run gets the warehouse the worker registered for the definition's name.
    let outcome = definition.on(&engine).request(cart).run().await;
    std::fs::remove_dir_all(&dir)?;
    match outcome? {
        SagaOutcome::Completed { ctx, outputs, .. } => {
            println!("checked out: {:?}", ctx.charged);
            for i in 0..ctx.items.len() {
                let name = format!("reserve_item[{i}]");
                println!(
                    "  {name}: {}",
                    outputs.json(&name).cloned().unwrap_or_default()
                );
            }
        }
        SagaOutcome::Compensated { cause, .. } => {
            println!("rolled back ({cause}): every reservation released")
        }
        other => println!("needs attention: {other:?}"),
    }
    Ok(())
}
