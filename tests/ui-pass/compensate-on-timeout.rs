//! `compensate_on_timeout`: a step that timed out for good is compensated too.

use std::time::Duration;

use saga_runtime::{saga, saga_step, SagaOutcome, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx {
    undone: Vec<String>,
}

#[saga_step(nothing_to_undo)]
async fn validate(_ctx: &mut Ctx) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(compensate = void_payment, timeout = "20ms", compensate_on_timeout)]
async fn charge(_ctx: &mut Ctx) -> Result<(), StepError> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

async fn void_payment(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.undone.push("void_payment".into());
    Ok(())
}

saga! {
    pub PaymentSaga(Ctx) {
        validate,
        charge,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let policy = PaymentSaga::description().steps[1].policy;
    assert!(policy.compensate_on_timeout);
    assert_eq!(policy.timeout, Some(Duration::from_millis(20)));

    match PaymentSaga::run(Ctx::default()).await.unwrap() {
        SagaOutcome::Compensated { ctx, .. } => assert_eq!(ctx.undone, ["void_payment"]),
        other => panic!("unexpected {other:?}"),
    }
}
