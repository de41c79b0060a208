//! The module `saga new PaymentSaga --steps reserve,charge,ship --pivot charge` writes, checked in
//! as it wrote it (saga-cli's tests compare it with the tool's output byte for byte): compiled
//! here, and its own test run.

// Exactly as generated (which is close to, not always, rustfmt's layout).
#[rustfmt::skip]
#[path = "generated/payment_saga.rs"]
mod payment_saga;
