//! Steps named by path (`steps::reserve`), and a saga with a dependencies type.

use std::sync::atomic::{AtomicU32, Ordering};

use saga_runtime::{saga, SagaOutcome};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ctx {
    reservation: Option<u32>,
}

#[derive(Default)]
pub struct Services {
    calls: AtomicU32,
}

mod steps {
    use std::sync::atomic::Ordering;

    use saga_runtime::{saga_step, StepCx, StepError};

    use super::{Ctx, Services};

    #[saga_step(compensate = release, retries = 1)]
    pub async fn reserve(ctx: &mut Ctx, cx: &StepCx<Services>) -> Result<(), StepError> {
        let n = cx.deps().calls.fetch_add(1, Ordering::SeqCst);
        ctx.reservation = Some(n);
        Ok(())
    }

    pub async fn release(ctx: &mut Ctx, _cx: &StepCx<Services>) -> Result<(), StepError> {
        ctx.reservation = None;
        Ok(())
    }

    pub mod notify {
        use saga_runtime::{saga_step, StepError};

        use crate::Ctx;

        #[saga_step]
        pub async fn send_email(_ctx: &mut Ctx) -> Result<(), StepError> {
            Ok(())
        }
    }
}

saga! {
    pub OrderSaga(Ctx, Services) {
        steps::reserve,
        steps::notify::send_email,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(OrderSagaStep::ALL, [OrderSagaStep::Reserve, OrderSagaStep::SendEmail]);
    assert_eq!(OrderSagaStep::SendEmail.to_string(), "send_email");
    let description = OrderSaga::description();
    assert_eq!(description.steps[0].compensation, Some("release"));

    let services = Services::default();
    services.calls.store(7, Ordering::SeqCst);
    match OrderSaga::run_with(Ctx::default(), services).await.unwrap() {
        SagaOutcome::Completed { ctx, .. } => assert_eq!(ctx.reservation, Some(7)),
        other => panic!("unexpected {other:?}"),
    }
}
