//! Without the `metrics` feature: nothing registered, nothing recorded.

use std::time::Duration;

use super::Ended;
use crate::Saga;

/// No handles: the `metrics` feature is off.
#[doc(hidden)]
#[derive(Debug)]
pub struct SagaMetrics;

impl SagaMetrics {
    /// Nothing to register.
    pub fn new<S: Saga>() -> Self {
        SagaMetrics
    }

    /// Nothing to register.
    pub(crate) fn of<C, D>(
        _saga_type: &'static str,
        _steps: &[crate::step::StepDef<C, D>],
    ) -> Self {
        SagaMetrics
    }

    pub(crate) fn started(&self) {}

    pub(crate) fn ended(&self, _ended: Ended, _duration: Duration) {}

    pub(crate) fn attempt(&self, _step: usize, _compensation: bool, _duration: Duration) {}

    pub(crate) fn retry(&self, _step: usize) {}

    pub(crate) fn fenced(&self) {}
}

pub(crate) fn parked(_saga_type: &str) {}

pub(crate) fn lost_lease() {}
