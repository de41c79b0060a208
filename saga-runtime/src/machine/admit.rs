//! Whether an operator request can be honoured in a saga's state, and what it changes: a pure
//! function of the state, the same in every store, so that the check and the change are made in
//! one atomic step wherever the saga is kept.

use std::borrow::Cow;
use std::time::SystemTime;

use super::state::{Change, SagaState, Write};
use crate::event::{SagaEvent, SagaEventKind};
use crate::request::{OperatorRequest, Refusal};
use crate::step::Phase;
use crate::{SagaId, SagaStatus};

/// What an admitted operator request does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Admission {
    /// Mark the saga cancelled: the worker holding it acts on it at its next step boundary (a
    /// saga no worker holds is due at once).
    Cancel,
    /// Reopen the ended saga: record this write (no worker holds an ended saga, so it carries
    /// no fence), and leave the saga for a worker to acquire at once.
    Reopen(Box<Write>),
}

/// The saga an admission is for: its id, type and step count, and the time of the request.
#[derive(Debug, Clone, Copy)]
pub struct Requested<'a> {
    /// The saga's id.
    pub id: SagaId,
    /// Its type's name.
    pub saga_type: &'a str,
    /// How many steps it was started with.
    pub steps: usize,
    /// When the request was made.
    pub at: SystemTime,
}

impl SagaState {
    /// Whether `request` can be honoured in this state, and what it does; a store applies the
    /// admission atomically with the check.
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use saga_runtime::store::{Admission, Requested, SagaState};
    /// use saga_runtime::{OperatorRequest, Refusal, SagaId};
    ///
    /// let saga = Requested { id: SagaId::new(), saga_type: "OrderSaga", steps: 3, at: SystemTime::now() };
    /// let state = SagaState::new(None);
    /// assert!(matches!(state.admit(OperatorRequest::Cancel, saga), Ok(Admission::Cancel)));
    /// assert!(matches!(
    ///     state.admit(OperatorRequest::Resume, saga),
    ///     Err(Refusal::NotParked { .. })
    /// ));
    /// ```
    pub fn admit(
        &self,
        request: OperatorRequest,
        saga: Requested<'_>,
    ) -> Result<Admission, Refusal> {
        let status = || self.status.name().to_owned();
        let reopen = |change: Change, status: SagaStatus<usize>| {
            let event = SagaEvent {
                saga_id: saga.id,
                saga_type: Cow::Owned(saga.saga_type.to_owned()),
                at: saga.at,
                kind: SagaEventKind::SagaReopened { request },
            };
            Ok(Admission::Reopen(Box::new(
                Write::new(event, change).with_status(Some(status)),
            )))
        };
        match (request, &self.status) {
            (OperatorRequest::Cancel, SagaStatus::Parked { reason }) => Err(Refusal::Parked {
                reason: reason.clone(),
            }),
            (OperatorRequest::Cancel, s) if s.is_terminal() => {
                Err(Refusal::Finished { status: status() })
            }
            (OperatorRequest::Cancel, _) => self.admit_cancel(saga.steps),
            (OperatorRequest::Resume, SagaStatus::Parked { .. }) => {
                let before = self.parked_from.as_deref().cloned();
                reopen(
                    Change::Unparked,
                    before.unwrap_or_else(|| self.resumed_status(saga.steps)),
                )
            }
            (OperatorRequest::Resume, _) => Err(Refusal::NotParked { status: status() }),
            (OperatorRequest::Retry, SagaStatus::CompensationFailed { step }) => {
                // Compensation continues with the (latest) step whose compensation failed.
                let step = self.compensation_failures.first().map_or(*step, |f| f.step);
                reopen(Change::RollbackResumed, SagaStatus::Compensating { step })
            }
            (OperatorRequest::Retry, SagaStatus::Failed { step }) => {
                reopen(Change::FailureCleared, SagaStatus::Running { step: *step })
            }
            (OperatorRequest::Retry, SagaStatus::Completed | SagaStatus::Compensated) => {
                Err(Refusal::Finished { status: status() })
            }
            (OperatorRequest::Retry, _) => Err(Refusal::NotRetryable { status: status() }),
        }
    }

    fn admit_cancel(&self, steps: usize) -> Result<Admission, Refusal> {
        if self.rollback.is_some() {
            return Err(Refusal::RollingBack);
        }
        if self.past_recorded_pivot() {
            return Err(Refusal::PastPivot);
        }
        // An attempt in flight cannot be stopped; one waiting for its retry can (the wait is cut
        // short and the saga rolls back).
        let running = self
            .active
            .iter()
            .find(|a| a.phase == Phase::Action && (a.in_flight || a.attempt == 0));
        if let Some(activity) = running {
            if Some(activity.step) == self.pivot {
                return Err(Refusal::InsidePivot);
            }
            // The last step, or a member of a final group (its members at work finish, and
            // then nothing is left to stop).
            if super::stage_of(&self.groups, activity.step).end >= steps {
                return Err(Refusal::LastStep);
            }
        }
        Ok(Admission::Cancel)
    }

    /// Whether the step the saga recorded as its pivot completed.
    fn past_recorded_pivot(&self) -> bool {
        self.pivot.is_some_and(|pivot| {
            self.completed
                .iter()
                .any(|d| d.step == pivot && !d.timed_out)
        })
    }

    /// The status of a parked saga that is resumed, when the status it had is not recorded:
    /// compensating the latest step left to compensate if it was rolling back, else running the
    /// step after the latest completed.
    fn resumed_status(&self, steps: usize) -> SagaStatus<usize> {
        // A step of a parallel group is named by the group's first member, as while it runs.
        let first = |step| super::stage_of(&self.groups, step).start;
        match &self.rollback {
            Some(_) => match self.completed.iter().rev().find(|d| !d.compensated) {
                Some(done) => SagaStatus::Compensating {
                    step: first(done.step),
                },
                None => SagaStatus::Pending,
            },
            None => match self.active.first() {
                Some(activity) => SagaStatus::Running {
                    step: first(activity.step),
                },
                None => match super::decide::next_step(self) {
                    next if next < steps => SagaStatus::Running { step: first(next) },
                    _ => SagaStatus::Pending,
                },
            },
        }
    }
}
