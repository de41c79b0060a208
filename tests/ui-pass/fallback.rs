//! `fallback` to a step with its own `compensate`: when the fallback stood in for the step, its
//! compensation is the one that runs.

use saga_runtime::{saga, saga_step, SagaOutcome, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx {
    carrier: Option<String>,
    undone: Vec<String>,
}

#[saga_step(compensate = cancel_express, fallback = book_standard)]
async fn book_express(_ctx: &mut Ctx) -> Result<(), StepError> {
    Err(StepError::permanent("express is full"))
}

async fn cancel_express(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.undone.push("cancel_express".into());
    Ok(())
}

#[saga_step(compensate = cancel_standard)]
async fn book_standard(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.carrier = Some("standard".into());
    Ok(())
}

async fn cancel_standard(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.carrier = None;
    ctx.undone.push("cancel_standard".into());
    Ok(())
}

#[saga_step]
async fn print_label(_ctx: &mut Ctx) -> Result<(), StepError> {
    Err(StepError::permanent("printer on fire"))
}

saga! {
    pub ShippingSaga(Ctx) {
        book_express,
        print_label,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let description = ShippingSaga::description();
    assert_eq!(description.steps[0].fallback, Some("book_standard"));

    match ShippingSaga::run(Ctx::default()).await.unwrap() {
        SagaOutcome::Compensated { ctx, .. } => {
            assert_eq!(ctx.carrier, None);
            assert_eq!(ctx.undone, ["cancel_standard"]);
        }
        other => panic!("unexpected {other:?}"),
    }
}
