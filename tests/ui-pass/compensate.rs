//! `compensate`, on steps with and without the step handle; a saga without a dependencies type.

use saga_runtime::{saga, saga_step, RollbackCause, SagaOutcome, StepCx, StepError, Undo};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx {
    reserved: bool,
    charged: bool,
    undone: Vec<String>,
}

#[saga_step(compensate = release)]
async fn reserve(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.reserved = true;
    Ok(())
}

async fn release(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.reserved = false;
    ctx.undone.push("release".into());
    Ok(())
}

#[saga_step(compensate = refund)]
async fn charge(ctx: &mut Ctx, cx: &StepCx) -> Result<(), StepError> {
    assert_eq!(cx.step(), "charge");
    ctx.charged = true;
    Ok(())
}

async fn refund(ctx: &mut Ctx, cx: &StepCx) -> Result<(), StepError> {
    assert_eq!(cx.step(), "charge");
    ctx.charged = false;
    ctx.undone.push("refund".into());
    Ok(())
}

#[saga_step]
async fn ship(_ctx: &mut Ctx) -> Result<(), StepError> {
    Err(StepError::permanent("no courier"))
}

saga! {
    /// Reserve, charge, ship; undone in reverse when shipping fails.
    pub OrderSaga(Ctx) {
        reserve,
        charge,
        ship,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let description = OrderSaga::description();
    assert_eq!(description.step_names(), ["reserve", "charge", "ship"]);
    assert_eq!(description.steps[0].policy.undo, Undo::Compensate);
    assert_eq!(description.steps[0].compensation, Some("release"));
    assert_eq!(description.steps[2].policy.undo, Undo::Unspecified);

    match OrderSaga::run(Ctx::default()).await.unwrap() {
        SagaOutcome::Compensated { cause, ctx, .. } => {
            assert!(matches!(
                cause,
                RollbackCause::StepFailed { step: OrderSagaStep::Ship, .. }
            ));
            assert!(!ctx.reserved && !ctx.charged);
            assert_eq!(ctx.undone, ["refund", "release"]);
        }
        other => panic!("unexpected {other:?}"),
    }
}
