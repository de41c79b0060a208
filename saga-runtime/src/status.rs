//! Statuses: where a saga is, as `status(id)` reports it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A saga's status. `S` is the generated step enum (`OrderSagaStep`); stores keep `SagaStatus<usize>`
/// with step positions.
///
/// Statuses only move forward: pending, running (step by step), then either completed, or failed
/// (after a pivot), or compensating (from the latest completed step back to the first) and then
/// compensated or compensation-failed. A terminal status never changes, except that an operator
/// may retry a compensation-failed saga, which compensates onwards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SagaStatus<S> {
    /// Recorded, no step started yet. A saga started by an engine is recorded together with its
    /// first step's intent, so it is seen running from the start.
    Pending,
    /// Running the action (or fallback) of this step.
    Running {
        /// The step.
        step: S,
    },
    /// Running the compensation of this step.
    Compensating {
        /// The step.
        step: S,
    },
    /// Every step completed.
    Completed,
    /// A step failed (or the saga was cancelled) and every completed step was compensated.
    Compensated,
    /// A compensation failed for good; the saga needs an operator, who may retry it.
    CompensationFailed {
        /// The step whose compensation failed (the first one, under best-effort rollback).
        step: S,
    },
    /// A step after the pivot failed for good; nothing was compensated. Needs attention.
    Failed {
        /// The step that failed.
        step: S,
    },
    /// The saga cannot go on under this program and needs attention.
    Parked {
        /// Why.
        reason: String,
    },
}

impl<S> SagaStatus<S> {
    /// `true` for completed, compensated, compensation-failed, failed and parked.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            SagaStatus::Pending | SagaStatus::Running { .. } | SagaStatus::Compensating { .. }
        )
    }

    /// The same status with its step mapped.
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> SagaStatus<T> {
        match self {
            SagaStatus::Pending => SagaStatus::Pending,
            SagaStatus::Running { step } => SagaStatus::Running { step: f(step) },
            SagaStatus::Compensating { step } => SagaStatus::Compensating { step: f(step) },
            SagaStatus::Completed => SagaStatus::Completed,
            SagaStatus::Compensated => SagaStatus::Compensated,
            SagaStatus::CompensationFailed { step } => {
                SagaStatus::CompensationFailed { step: f(step) }
            }
            SagaStatus::Failed { step } => SagaStatus::Failed { step: f(step) },
            SagaStatus::Parked { reason } => SagaStatus::Parked { reason },
        }
    }

    /// The status's name: `"running"`, `"compensation_failed"`, ...
    pub fn name(&self) -> &'static str {
        match self {
            SagaStatus::Pending => "pending",
            SagaStatus::Running { .. } => "running",
            SagaStatus::Compensating { .. } => "compensating",
            SagaStatus::Completed => "completed",
            SagaStatus::Compensated => "compensated",
            SagaStatus::CompensationFailed { .. } => "compensation_failed",
            SagaStatus::Failed { .. } => "failed",
            SagaStatus::Parked { .. } => "parked",
        }
    }
}

impl<S: fmt::Display> fmt::Display for SagaStatus<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SagaStatus::Running { step }
            | SagaStatus::Compensating { step }
            | SagaStatus::CompensationFailed { step }
            | SagaStatus::Failed { step } => write!(f, "{} ({step})", self.name()),
            SagaStatus::Parked { reason } => write!(f, "parked ({reason})"),
            _ => f.write_str(self.name()),
        }
    }
}
