use saga_runtime::{saga_step, SagaDefinition, StepError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Trip;

#[saga_step(nothing_to_undo)]
async fn book_flight(_trip: &Trip) -> Result<String, StepError> {
    Ok("flight".into())
}

#[saga_step(pivot)]
async fn pay(_trip: &Trip) -> Result<(), StepError> {
    Ok(())
}

fn main() {
    let _ = SagaDefinition::<Trip, ()>::builder("Travel")
        .parallel(|group| {
            group.step::<book_flight>().instance::<pay>(0);
        })
        .build();
}
