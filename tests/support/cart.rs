//! A cart saga assembled at run time, shared by the builder tests: one reservation per item of
//! the cart, all at once (each 1 s), then `checkout`, which fails when the cart says so. Each
//! step notes what it did in the [`Notes`], by idempotency key.

use std::sync::Mutex;
use std::time::Duration;

use saga_runtime::{saga_step, BuildError, SagaDefinition, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// What ran, in order (with idempotency keys).
#[derive(Default)]
pub struct Notes(Mutex<Vec<String>>);

impl Notes {
    /// Notes `what`.
    pub fn note(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }

    /// What was noted, in order.
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// One reservation per item of a cart, all at once; `checkout` fails when the cart says so.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cart {
    /// One reservation each.
    pub items: Vec<String>,
    /// `checkout` fails for good.
    pub declined: bool,
}

/// Reserves item `cx.instance()` of the cart.
#[saga_step(compensate = release)]
pub async fn reserve(cart: &Cart, cx: &StepCx<Notes>) -> Result<String, StepError> {
    let item = cx
        .instance()
        .and_then(|i| cart.items.get(i))
        .ok_or_else(|| StepError::permanent("no item for this instance"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cx.deps()
        .note(format!("reserve {item} as {}", cx.idempotency_key()));
    Ok(format!("hold-{item}"))
}

/// Releases what its instance reserved.
pub async fn release(_cart: &Cart, cx: &StepCx<Notes>, hold: String) -> Result<(), StepError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    cx.deps()
        .note(format!("release {hold} as {}", cx.idempotency_key()));
    Ok(())
}

/// Pays for the cart, unless it is declined.
#[saga_step]
pub async fn checkout(cart: &mut Cart, cx: &StepCx<Notes>) -> Result<(), StepError> {
    if cart.declined {
        return Err(StepError::permanent("card declined"));
    }
    cx.deps().note("checkout".into());
    Ok(())
}

/// The definition for `cart`: one `reserve` instance per item in a group, then `checkout`.
pub fn cart_saga(cart: &Cart) -> Result<SagaDefinition<Cart, Notes>, BuildError> {
    SagaDefinition::builder("CartSaga")
        .parallel(|group| {
            for i in 0..cart.items.len() {
                group.instance::<reserve>(i);
            }
        })
        .step::<checkout>()
        .build()
}

/// A cart of `items`.
pub fn cart(items: &[&str], declined: bool) -> Cart {
    Cart {
        items: items.iter().map(|s| s.to_string()).collect(),
        declined,
    }
}
