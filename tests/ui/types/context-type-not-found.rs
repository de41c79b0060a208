use saga_runtime::{saga_step, StepError};

// `Cart` is named twice in the expansion (the function and the step's impl), but reported once.
#[saga_step(nothing_to_undo)]
async fn reserve(_ctx: &mut Cart) -> Result<(), StepError> {
    Ok(())
}

fn main() {}
