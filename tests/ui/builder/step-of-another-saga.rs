use saga_runtime::{saga_step, SagaDefinition, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Trip;

#[derive(Clone, Default, Serialize, Deserialize)]
struct Cart;

#[saga_step]
async fn checkout(_cart: &mut Cart) -> Result<(), StepError> {
    Ok(())
}

fn main() {
    let _ = SagaDefinition::<Trip, ()>::builder("Travel")
        .step::<checkout>()
        .build();
}
