use saga_runtime::saga;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Ctx;

saga! {
    pub OrderSaga(Ctx) {}
}

fn main() {}
