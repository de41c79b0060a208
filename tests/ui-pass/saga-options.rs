//! `#[saga(best_effort_rollback, deadline = "1m")]`.

use std::time::Duration;

use saga_runtime::{saga, saga_step, SagaOutcome, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx {
    done: bool,
}

#[saga_step]
async fn work(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.done = true;
    Ok(())
}

saga! {
    /// Docs and other attributes stay on the saga type.
    #[saga(best_effort_rollback, deadline = "1m")]
    #[derive(Debug)]
    pub BatchSaga(Ctx) {
        work,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = BatchSaga::description().options;
    assert!(options.best_effort_rollback);
    assert_eq!(options.deadline, Some(Duration::from_secs(60)));
    let _ = format!("{BatchSaga:?}");

    match BatchSaga::run(Ctx::default()).await.unwrap() {
        SagaOutcome::Completed { ctx, .. } => assert!(ctx.done),
        other => panic!("unexpected {other:?}"),
    }
}
