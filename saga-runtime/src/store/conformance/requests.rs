//! Cases of the store contract for operators' requests and durable timers.

use std::time::{Duration, SystemTime};

use super::{create, event, intent, LONG};
use crate::event::SagaEventKind;
use crate::machine::{Change, CompensationFailed};
use crate::store::{Acquire, Fence, Held, LeaseRequest, SagaStore, StoreErrorKind, Write};
use crate::{OperatorRequest, Refusal, RollbackCause, SagaId, SagaStatus, StepError};

/// Ids of the sagas `owner` acquires now.
async fn acquired(store: &dyn SagaStore, owner: &str) -> Vec<SagaId> {
    super::acquired(store, Acquire::new(LeaseRequest::new(owner, LONG), 10)).await
}

/// Writes `writes` under `fence`; the new fence.
async fn write(store: &dyn SagaStore, id: SagaId, fence: Fence, writes: Vec<Write>) -> Fence {
    let version = store
        .write(id, fence, &mut { writes })
        .await
        .expect("write");
    Fence { version, ..fence }
}

fn parked(id: SagaId) -> Write {
    let reason = "no saga type `ConformanceSaga` is registered".to_owned();
    let kind = SagaEventKind::SagaParked {
        reason: reason.clone(),
    };
    Write::new(event(id, kind), Change::None).with_status(Some(SagaStatus::Parked { reason }))
}

pub(super) async fn a_cancel_is_marked_and_renew_reports_it(store: Box<dyn SagaStore>) {
    let (id, fence) = create(&*store, "w1#1", LONG).await;
    let fence = write(&*store, id, fence, vec![intent(id, 0)]).await;
    let record = store
        .request(id, OperatorRequest::Cancel, None)
        .await
        .unwrap()
        .expect("a saga in its first step can be cancelled");
    assert!(record.cancel_requested);
    assert_eq!(record.version, fence.version, "no history entry of its own");
    assert_eq!(
        record.lease.map(|l| l.token),
        Some(1),
        "its holder keeps it"
    );
    let held = store.renew("w1#1", &[id], LONG).await.unwrap();
    assert_eq!(held, [Held::new(id, 1, true)], "the holder learns of it");
    // Whoever takes the saga over learns of it too.
    store.release(id, fence, None).await.unwrap();
    let taken = store
        .acquire(Acquire::new(LeaseRequest::new("w2#1", LONG), 10))
        .await
        .unwrap();
    assert!(taken[0].as_ref().unwrap().cancel_requested);
}

pub(super) async fn requests_that_cannot_be_honoured_are_refused_with_the_reason(
    store: Box<dyn SagaStore>,
) {
    let unknown = store
        .request(SagaId::new(), OperatorRequest::Cancel, None)
        .await
        .unwrap_err();
    assert_eq!(unknown.kind(), StoreErrorKind::NotFound);

    let (id, fence) = create(&*store, "w1#1", LONG).await;
    let fence = write(&*store, id, fence, vec![intent(id, 0)]).await;
    assert!(matches!(
        store_refusal(&*store, id, OperatorRequest::Resume).await,
        Refusal::NotParked { status } if status == "running"
    ));
    assert!(matches!(
        store_refusal(&*store, id, OperatorRequest::Retry).await,
        Refusal::NotRetryable { status } if status == "running"
    ));

    // In its last step (of two), with the attempt in flight: nothing is left to stop.
    let done = Change::Completed(crate::machine::CompletedStep::new(0, false));
    let completed = Write::new(
        event(
            id,
            SagaEventKind::StepCompleted {
                step: "a".into(),
                attempt: 1,
                duration: Duration::ZERO,
                output: None,
            },
        ),
        done,
    );
    let fence = write(&*store, id, fence, vec![completed, intent(id, 1)]).await;
    assert_eq!(
        store_refusal(&*store, id, OperatorRequest::Cancel).await,
        Refusal::LastStep
    );
    let before = store.load(id).await.unwrap().unwrap();
    assert!(
        !before.cancel_requested,
        "a refused request changes nothing"
    );
    assert_eq!(before.version, fence.version);

    // Ended: nothing to cancel, nothing to retry.
    write(&*store, id, fence, vec![super::finished(id)]).await;
    assert!(matches!(
        store_refusal(&*store, id, OperatorRequest::Cancel).await,
        Refusal::Finished { status } if status == "completed"
    ));
    assert!(matches!(
        store_refusal(&*store, id, OperatorRequest::Retry).await,
        Refusal::Finished { .. }
    ));

    // A parked saga is resumed, not cancelled.
    let (parked_id, fence) = create(&*store, "w1#1", LONG).await;
    write(&*store, parked_id, fence, vec![parked(parked_id)]).await;
    assert!(matches!(
        store_refusal(&*store, parked_id, OperatorRequest::Cancel).await,
        Refusal::Parked { .. }
    ));
}

async fn store_refusal(store: &dyn SagaStore, id: SagaId, request: OperatorRequest) -> Refusal {
    store
        .request(id, request, None)
        .await
        .unwrap()
        .expect_err("refused")
}

pub(super) async fn resume_reopens_a_parked_saga_for_any_worker(store: Box<dyn SagaStore>) {
    let (id, fence) = create(&*store, "w1#1", LONG).await;
    let fence = write(&*store, id, fence, vec![intent(id, 0)]).await;
    let fence = write(&*store, id, fence, vec![parked(id)]).await;
    assert!(acquired(&*store, "w2#1").await.is_empty(), "parked: ended");
    let record = store
        .request(id, OperatorRequest::Resume, None)
        .await
        .unwrap()
        .expect("a parked saga can be resumed");
    assert_eq!(
        record.state.status,
        SagaStatus::Running { step: 0 },
        "the status it had"
    );
    assert_eq!(record.version, fence.version + 1, "one history entry");
    assert!(record.lease.is_none(), "for any worker");
    let history = store.history(id, fence.version, 10).await.unwrap().unwrap();
    assert!(matches!(
        history[..],
        [crate::SagaEvent {
            kind: SagaEventKind::SagaReopened {
                request: OperatorRequest::Resume
            },
            ..
        }]
    ));
    let taken = store
        .acquire(Acquire::new(LeaseRequest::new("w2#1", LONG), 10))
        .await
        .unwrap();
    let taken = taken[0].as_ref().expect("decodes");
    assert_eq!(taken.id, id, "acquired at once");
    assert_eq!(taken.state.recovery_attempts, 0, "not a takeover");
    assert!(taken.state.active[0].in_flight, "its attempt runs again");
}

pub(super) async fn retry_reopens_and_leases_to_the_caller(store: Box<dyn SagaStore>) {
    let (id, fence) = create(&*store, "w1#1", LONG).await;
    let cause = RollbackCause::StepFailed {
        step: 1,
        error: StepError::permanent("no"),
    };
    let rollback = Write::new(
        event(
            id,
            SagaEventKind::SagaResumed {
                recovery_attempt: 1,
            },
        ),
        Change::RollbackStarted(Box::new(cause)),
    );
    let failed = Write::new(
        event(
            id,
            SagaEventKind::SagaResumed {
                recovery_attempt: 1,
            },
        ),
        Change::CompensationFailed(Box::new(CompensationFailed::new(
            0,
            StepError::permanent("undo broken"),
        ))),
    )
    .with_status(Some(SagaStatus::CompensationFailed { step: 0 }));
    write(&*store, id, fence, vec![rollback, failed]).await;
    let record = store
        .request(
            id,
            OperatorRequest::Retry,
            Some(LeaseRequest::new("operator#1", LONG)),
        )
        .await
        .unwrap()
        .expect("a compensation-failed saga can be retried");
    assert_eq!(record.state.status, SagaStatus::Compensating { step: 0 });
    assert!(record.state.compensation_failures.is_empty(), "forgotten");
    let lease = record.lease.clone().expect("leased to the caller");
    assert_eq!((&*lease.owner, lease.token), ("operator#1", 2));
    assert!(
        acquired(&*store, "w2#1").await.is_empty(),
        "the caller holds it"
    );
}

pub(super) async fn a_released_saga_waits_for_its_wake_time(store: Box<dyn SagaStore>) {
    let (id, fence) = create(&*store, "w1#1", LONG).await;
    let fence = write(&*store, id, fence, vec![intent(id, 0)]).await;
    let wake = SystemTime::now() + Duration::from_millis(300);
    store.release(id, fence, Some(wake)).await.unwrap();
    assert!(acquired(&*store, "w2#1").await.is_empty(), "not due yet");
    let next = store.next_wake(None).await.unwrap().expect("a timer");
    let off = next.duration_since(wake).unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_millis(2), "{next:?} vs {wake:?}");
    assert_eq!(
        store
            .next_wake(Some(vec!["OtherSaga".into()]))
            .await
            .unwrap(),
        None,
        "only the types asked for"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(store.next_wake(None).await.unwrap(), None, "none after now");
    assert_eq!(acquired(&*store, "w2#1").await, [id], "due");

    // A cancellation makes a waiting saga due at once.
    let (other, fence) = create(&*store, "w1#1", LONG).await;
    let fence = write(&*store, other, fence, vec![intent(other, 0)]).await;
    store
        .release(other, fence, Some(SystemTime::now() + LONG))
        .await
        .unwrap();
    store
        .request(other, OperatorRequest::Cancel, None)
        .await
        .unwrap()
        .expect("cancellable");
    assert_eq!(acquired(&*store, "w3#1").await, [other]);
}

/// [`Acquire::only`] takes the one saga named, before its wake time, unless a live lease holds
/// it or it ended.
pub(super) async fn acquire_only_takes_one_saga_before_its_wake_time(store: Box<dyn SagaStore>) {
    let only = |id: SagaId, owner: &str| Acquire::new(LeaseRequest::new(owner, LONG), 10).only(id);
    let (waiting, fence) = create(&*store, "w1#1", LONG).await;
    let fence = write(&*store, waiting, fence, vec![intent(waiting, 0)]).await;
    store
        .release(waiting, fence, Some(SystemTime::now() + LONG))
        .await
        .unwrap();
    // Another saga, due at once, is not taken with it.
    let (due, fence) = create(&*store, "w1#1", LONG).await;
    store.release(due, fence, None).await.unwrap();
    // One a live lease holds is not taken.
    let (held, _) = create(&*store, "w1#1", LONG).await;
    assert!(super::acquired(&*store, only(held, "w2#1"))
        .await
        .is_empty());
    assert_eq!(
        super::acquired(&*store, only(waiting, "w2#1")).await,
        [waiting]
    );
    let record = store.load(waiting).await.unwrap().unwrap();
    let lease = record.lease.expect("leased");
    assert_eq!((&*lease.owner, lease.token), ("w2#1", 2));
    // Now held by w2: not taken again.
    assert!(super::acquired(&*store, only(waiting, "w3#1"))
        .await
        .is_empty());
    assert_eq!(acquired(&*store, "w3#1").await, [due]);
}
