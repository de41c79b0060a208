//! `pivot` and `nothing_to_undo`.

use saga_runtime::{saga, saga_step, SagaOutcome, StepError, Undo};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx {
    log: Vec<String>,
}

#[saga_step(nothing_to_undo)]
async fn check_stock(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.log.push("check_stock".into());
    Ok(())
}

#[saga_step(pivot)]
async fn charge(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.log.push("charge".into());
    Ok(())
}

#[saga_step]
async fn notify(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.log.push("notify".into());
    Ok(())
}

saga! {
    pub PivotSaga(Ctx) {
        check_stock,
        charge,
        notify,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let steps = PivotSaga::description().steps;
    assert_eq!(steps[0].policy.undo, Undo::NothingToUndo);
    assert_eq!(steps[1].policy.undo, Undo::Pivot);

    match PivotSaga::run(Ctx::default()).await.unwrap() {
        SagaOutcome::Completed { ctx, .. } => {
            assert_eq!(ctx.log, ["check_stock", "charge", "notify"]);
        }
        other => panic!("unexpected {other:?}"),
    }
}
