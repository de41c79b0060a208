//! Metrics through the [`metrics`] facade: what every saga type did, for dashboards and alerts.
//!
//! Nothing is recorded unless the program installs a recorder (an exporter such as
//! `metrics-exporter-prometheus`), and then only from the first saga of each type that runs after
//! it was installed: each type registers its handles once, at its first saga, and a handle
//! registered with no recorder stays a no-op (which is what makes metrics free without one:
//! recording is a branch on an empty handle, with no lookup and no allocation). Install the
//! recorder at startup, before any saga runs.
//!
//! | Metric | Kind | Labels |
//! |---|---|---|
//! | `saga_started_total` | counter | `saga_type` |
//! | `saga_completed_total` | counter | `saga_type` |
//! | `saga_compensated_total` | counter | `saga_type` |
//! | `saga_compensation_failed_total` | counter | `saga_type` |
//! | `saga_failed_total` | counter | `saga_type` |
//! | `saga_parked_total` | counter | `saga_type` |
//! | `saga_step_retries_total` | counter | `saga_type`, `step` |
//! | `saga_fenced_writes_total` | counter | `saga_type` |
//! | `saga_lost_leases_total` | counter | |
//! | `saga_duration_seconds` | histogram | `saga_type`, `outcome` |
//! | `saga_step_duration_seconds` | histogram | `saga_type`, `step` |
//!
//! A saga's duration runs from its start to its end, across restarts; a step's is that of each
//! attempt that succeeded (its action, or its compensation: `step` is then `undo:{step}`).
//!
//! Without the `metrics` feature (on by default) nothing is registered or recorded at all.

#[cfg(feature = "metrics")]
mod recorded;
#[cfg(feature = "metrics")]
pub use recorded::SagaMetrics;
#[cfg(feature = "metrics")]
pub(crate) use recorded::{lost_lease, parked};

#[cfg(not(feature = "metrics"))]
mod off;
#[cfg(not(feature = "metrics"))]
pub use off::SagaMetrics;
#[cfg(not(feature = "metrics"))]
pub(crate) use off::{lost_lease, parked};

/// How a saga ended, for its duration's label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ended {
    Completed,
    Compensated,
    CompensationFailed,
    Failed,
}
