//! `timeout`, `retries` and `backoff`.

use std::time::Duration;

use saga_runtime::{saga, saga_step, SagaOutcome, StepCx, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx {
    attempts: u32,
}

#[saga_step(timeout = "5s", retries = 3, backoff = "1ms")]
async fn flaky(ctx: &mut Ctx, cx: &StepCx) -> Result<(), StepError> {
    ctx.attempts = cx.attempt();
    if cx.attempt() < 3 {
        return Err(StepError::transient("try again"));
    }
    Ok(())
}

saga! {
    pub RetrySaga(Ctx) {
        flaky,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let policy = RetrySaga::description().steps[0].policy;
    assert_eq!(policy.timeout, Some(Duration::from_secs(5)));
    assert_eq!(policy.retries, 3);
    assert_eq!(policy.backoff, Duration::from_millis(1));

    match RetrySaga::run(Ctx::default()).await.unwrap() {
        SagaOutcome::Completed { ctx, .. } => assert_eq!(ctx.attempts, 3),
        other => panic!("unexpected {other:?}"),
    }
}
