//! A step handle written through an alias of `StepCx<D>`, mixed with steps that spell it out.

use saga_runtime::{saga, saga_step, SagaOutcome, StepCx, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx {
    log: Vec<String>,
}

#[derive(Default)]
pub struct Services {
    region: &'static str,
}

type Cx = StepCx<Services>;

#[saga_step(compensate = unreserve, fallback = reserve_elsewhere)]
async fn reserve(_ctx: &mut Ctx, _cx: &Cx) -> Result<(), StepError> {
    Err(StepError::permanent("sold out"))
}

async fn unreserve(ctx: &mut Ctx, _cx: &Cx) -> Result<(), StepError> {
    ctx.log.push("unreserve".into());
    Ok(())
}

#[saga_step(compensate = unreserve_elsewhere)]
async fn reserve_elsewhere(ctx: &mut Ctx, cx: &StepCx<Services>) -> Result<(), StepError> {
    ctx.log.push(format!("reserve_elsewhere in {}", cx.deps().region));
    Ok(())
}

async fn unreserve_elsewhere(ctx: &mut Ctx, _cx: &StepCx<Services>) -> Result<(), StepError> {
    ctx.log.push("unreserve_elsewhere".into());
    Ok(())
}

#[saga_step]
async fn confirm(ctx: &mut Ctx, cx: &Cx) -> Result<(), StepError> {
    ctx.log.push(format!("confirm in {}", cx.deps().region));
    Ok(())
}

saga! {
    pub BookingSaga(Ctx, Services) {
        reserve,
        confirm,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let services = Services { region: "eu" };
    match BookingSaga::run_with(Ctx::default(), services).await.unwrap() {
        SagaOutcome::Completed { ctx, .. } => {
            assert_eq!(ctx.log, ["reserve_elsewhere in eu", "confirm in eu"]);
        }
        other => panic!("unexpected {other:?}"),
    }
}
