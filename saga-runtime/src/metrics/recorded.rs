//! The handles, registered with the recorder installed when a type's first saga runs.

use std::time::Duration;

use ::metrics::{counter, histogram, Counter, Histogram, Unit};

use super::Ended;
use crate::Saga;

/// The handles of one saga type, registered at its first saga (see the module docs).
#[doc(hidden)]
#[derive(Debug)]
pub struct SagaMetrics {
    started: Counter,
    completed: Counter,
    compensated: Counter,
    compensation_failed: Counter,
    failed: Counter,
    fenced: Counter,
    /// By outcome: completed, compensated, compensation failed, failed.
    durations: [Histogram; 4],
    /// By step: the action's attempts, the compensation's attempts, the retries.
    steps: Box<[StepMetrics]>,
}

#[derive(Debug)]
struct StepMetrics {
    action: Histogram,
    compensation: Option<Histogram>,
    retries: Counter,
}

impl SagaMetrics {
    /// Registers saga type `S`'s handles with the recorder installed now.
    pub fn new<S: Saga>() -> Self {
        Self::of(S::NAME, S::steps())
    }

    /// Registers the handles of saga type `saga_type` with these steps.
    pub(crate) fn of<C, D>(saga_type: &'static str, steps: &[crate::step::StepDef<C, D>]) -> Self {
        describe();
        let count = |name: &'static str| counter!(name, "saga_type" => saga_type);
        let duration = |outcome: &'static str| histogram!("saga_duration_seconds", "saga_type" => saga_type, "outcome" => outcome);
        SagaMetrics {
            started: count("saga_started_total"),
            completed: count("saga_completed_total"),
            compensated: count("saga_compensated_total"),
            compensation_failed: count("saga_compensation_failed_total"),
            failed: count("saga_failed_total"),
            fenced: count("saga_fenced_writes_total"),
            durations: [
                duration("completed"),
                duration("compensated"),
                duration("compensation_failed"),
                duration("failed"),
            ],
            steps: steps
                .iter()
                .map(|step| {
                    // The instances of a step are one series: their number is not a label.
                    let name = step.base_name();
                    // Only steps that can be compensated get a series for it.
                    let undoable = step.description.compensation.is_some()
                        || step.description.fallback.is_some();
                    StepMetrics {
                        action: histogram!("saga_step_duration_seconds",
                            "saga_type" => saga_type, "step" => name),
                        compensation: undoable.then(|| {
                            histogram!("saga_step_duration_seconds",
                                "saga_type" => saga_type, "step" => format!("undo:{name}"))
                        }),
                        retries: counter!("saga_step_retries_total",
                            "saga_type" => saga_type, "step" => name),
                    }
                })
                .collect(),
        }
    }

    pub(crate) fn started(&self) {
        self.started.increment(1);
    }

    pub(crate) fn ended(&self, ended: Ended, duration: Duration) {
        let (counter, index) = match ended {
            Ended::Completed => (&self.completed, 0),
            Ended::Compensated => (&self.compensated, 1),
            Ended::CompensationFailed => (&self.compensation_failed, 2),
            Ended::Failed => (&self.failed, 3),
        };
        counter.increment(1);
        self.durations[index].record(duration.as_secs_f64());
    }

    /// An attempt of step `step` succeeded in `duration`.
    pub(crate) fn attempt(&self, step: usize, compensation: bool, duration: Duration) {
        if let Some(step) = self.steps.get(step) {
            let histogram = match compensation {
                false => Some(&step.action),
                true => step.compensation.as_ref(),
            };
            if let Some(histogram) = histogram {
                histogram.record(duration.as_secs_f64());
            }
        }
    }

    pub(crate) fn retry(&self, step: usize) {
        if let Some(step) = self.steps.get(step) {
            step.retries.increment(1);
        }
    }

    pub(crate) fn fenced(&self) {
        self.fenced.increment(1);
    }
}

/// A saga parked: rare, and of a type this program may not even know, so counted by name.
pub(crate) fn parked(saga_type: &str) {
    counter!("saga_parked_total", "saga_type" => saga_type.to_owned()).increment(1);
}

/// A lease a renewal found lost.
pub(crate) fn lost_lease() {
    counter!("saga_lost_leases_total").increment(1);
}

/// Units and help texts, for exporters that show them.
fn describe() {
    use ::metrics::{describe_counter, describe_histogram};
    describe_counter!("saga_started_total", "Sagas started");
    describe_counter!("saga_completed_total", "Sagas that completed every step");
    describe_counter!(
        "saga_compensated_total",
        "Sagas rolled back by their compensations"
    );
    describe_counter!(
        "saga_compensation_failed_total",
        "Sagas whose rollback stopped at a compensation that failed for good"
    );
    describe_counter!("saga_failed_total", "Sagas that failed past their pivot");
    describe_counter!("saga_parked_total", "Sagas parked for an operator");
    describe_counter!("saga_step_retries_total", "Step attempts retried");
    describe_counter!(
        "saga_fenced_writes_total",
        "Writes refused because another worker had taken the saga over"
    );
    describe_counter!(
        "saga_lost_leases_total",
        "Running sagas whose lease another worker took"
    );
    describe_histogram!(
        "saga_duration_seconds",
        Unit::Seconds,
        "Saga durations, start to end"
    );
    describe_histogram!(
        "saga_step_duration_seconds",
        Unit::Seconds,
        "Durations of step attempts that succeeded"
    );
}
