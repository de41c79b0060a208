//! The store conformance suite: the store contract as tests that any [`SagaStore`] runs
//! unchanged (the in-memory and SQLite stores in this workspace's tests; a PostgreSQL store
//! next). Each case takes a fresh, empty store.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use saga_runtime::store::{conformance, MemoryStore};
//!
//! for (name, case) in conformance::CASES {
//!     case(Box::new(MemoryStore::new())).await;
//!     println!("{name}: ok");
//! }
//! # }
//! ```

mod requests;
mod types;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;

use super::{
    Acquire, Change, Created, Fence, Held, LeaseRequest, NewSaga, SagaQuery, SagaStore,
    StatusCount, StoreErrorKind, StoredContext, Write,
};
use crate::event::{SagaEvent, SagaEventKind};
use crate::step::Phase;
use crate::{SagaId, SagaStatus};

/// One case: runs against a fresh store and panics on a breach of the contract.
pub type Case = fn(Box<dyn SagaStore>) -> BoxFuture<'static, ()>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("create_then_find_by_id_or_key", |s| {
        Box::pin(create_then_find_by_id_or_key(s))
    }),
    ("create_records_its_first_writes_only_when_new", |s| {
        Box::pin(create_records_its_first_writes_only_when_new(s))
    }),
    ("a_create_whose_writes_end_the_saga_holds_no_lease", |s| {
        Box::pin(a_create_whose_writes_end_the_saga_holds_no_lease(s))
    }),
    ("writes_fold_into_the_state_and_history", |s| {
        Box::pin(writes_fold_into_the_state_and_history(s))
    }),
    ("a_slot_writes_as_the_store_does", |s| {
        Box::pin(a_slot_writes_as_the_store_does(s))
    }),
    ("a_stale_token_is_fenced_and_changes_nothing", |s| {
        Box::pin(a_stale_token_is_fenced_and_changes_nothing(s))
    }),
    ("a_wrong_version_is_a_conflict", |s| {
        Box::pin(a_wrong_version_is_a_conflict(s))
    }),
    ("a_terminal_saga_never_changes", |s| {
        Box::pin(a_terminal_saga_never_changes(s))
    }),
    ("acquire_skips_live_leases_and_takes_expired_ones", |s| {
        Box::pin(acquire_skips_live_leases_and_takes_expired_ones(s))
    }),
    ("concurrent_acquires_never_share_a_saga", |s| {
        Box::pin(concurrent_acquires_never_share_a_saga(s))
    }),
    ("renew_keeps_and_release_frees", |s| {
        Box::pin(renew_keeps_and_release_frees(s))
    }),
    ("reclaim_takes_an_earlier_incarnations_sagas_only", |s| {
        Box::pin(reclaim_takes_an_earlier_incarnations_sagas_only(s))
    }),
    ("history_pages", |s| Box::pin(history_pages(s))),
    ("list_filters_and_pages", |s| {
        Box::pin(list_filters_and_pages(s))
    }),
    ("counts_by_type_and_status", |s| {
        Box::pin(counts_by_type_and_status(s))
    }),
    ("unknown_sagas_are_not_found", |s| {
        Box::pin(unknown_sagas_are_not_found(s))
    }),
    ("a_cancel_is_marked_and_renew_reports_it", |s| {
        Box::pin(requests::a_cancel_is_marked_and_renew_reports_it(s))
    }),
    (
        "requests_that_cannot_be_honoured_are_refused_with_the_reason",
        |s| Box::pin(requests::requests_that_cannot_be_honoured_are_refused_with_the_reason(s)),
    ),
    ("resume_reopens_a_parked_saga_for_any_worker", |s| {
        Box::pin(requests::resume_reopens_a_parked_saga_for_any_worker(s))
    }),
    ("retry_reopens_and_leases_to_the_caller", |s| {
        Box::pin(requests::retry_reopens_and_leases_to_the_caller(s))
    }),
    ("a_released_saga_waits_for_its_wake_time", |s| {
        Box::pin(requests::a_released_saga_waits_for_its_wake_time(s))
    }),
    ("acquire_only_takes_one_saga_before_its_wake_time", |s| {
        Box::pin(requests::acquire_only_takes_one_saga_before_its_wake_time(
            s,
        ))
    }),
    ("saga_types_are_recorded_once_per_shape", |s| {
        Box::pin(types::saga_types_are_recorded_once_per_shape(s))
    }),
];

const LONG: Duration = Duration::from_secs(600);

fn event(id: SagaId, kind: SagaEventKind) -> SagaEvent {
    SagaEvent {
        saga_id: id,
        saga_type: Cow::Borrowed("ConformanceSaga"),
        at: SystemTime::now(),
        kind,
    }
}

fn new_saga(owner: Option<&str>, lease: Duration) -> NewSaga {
    let id = SagaId::new();
    let started = event(id, SagaEventKind::SagaStarted { steps: Vec::new() });
    let mut saga = NewSaga::new(
        id,
        "ConformanceSaga",
        vec!["a", "b"],
        StoredContext::json(&b"{\"n\":1}"[..]),
        started,
    );
    saga.lease = owner.map(|o| LeaseRequest::new(o, lease));
    saga
}

fn intent(id: SagaId, step: usize) -> Write {
    let kind = SagaEventKind::StepStarted {
        step: "a".into(),
        phase: Phase::Action,
        attempt: 1,
    };
    let change = Change::AttemptStarted {
        step,
        phase: Phase::Action,
        attempt: 1,
    };
    Write::new(event(id, kind), change).with_status(Some(SagaStatus::Running { step }))
}

fn finished(id: SagaId) -> Write {
    let kind = SagaEventKind::SagaCompleted {
        duration: Duration::ZERO,
    };
    Write::new(event(id, kind), Change::None).with_status(Some(SagaStatus::Completed))
}

/// Ids of the sagas `request` acquires.
async fn acquired(store: &dyn SagaStore, request: Acquire) -> Vec<SagaId> {
    let records = store.acquire(request).await.expect("acquire");
    records
        .into_iter()
        .map(|r| r.expect("decodes").id)
        .collect()
}

/// Creates a saga leased to `owner`; its fence.
async fn create(store: &dyn SagaStore, owner: &str, lease: Duration) -> (SagaId, Fence) {
    let saga = new_saga(Some(owner), lease);
    let id = saga.id;
    match store.create(saga, &mut Vec::new()).await.expect("create") {
        Created::New { version, lease } => {
            let lease = lease.expect("the creator's lease");
            assert_eq!(lease.token, 1, "the first owner's token");
            assert_eq!(&*lease.owner, owner);
            (
                id,
                Fence {
                    token: lease.token,
                    version,
                },
            )
        }
        Created::Existing(_) => panic!("a new id exists already"),
    }
}

async fn create_records_its_first_writes_only_when_new(store: Box<dyn SagaStore>) {
    let saga = new_saga(Some("w#1"), LONG);
    let id = saga.id;
    let again = saga.clone();
    let mut writes = vec![intent(id, 0)];
    match store.create(saga, &mut writes).await.unwrap() {
        Created::New { version, .. } => assert_eq!(version, 2, "the started event and the intent"),
        Created::Existing(_) => panic!("a new id exists already"),
    }
    assert!(writes.is_empty(), "the writes are taken out of the vector");
    let mut writes = vec![intent(id, 1)];
    assert!(matches!(
        store.create(again, &mut writes).await.unwrap(),
        Created::Existing(_)
    ));
    assert!(writes.is_empty(), "taken out, though not recorded");
    let record = store.load(id).await.unwrap().expect("recorded");
    assert_eq!(record.version, 2, "the second create recorded nothing");
    assert_eq!(record.state.status, SagaStatus::Running { step: 0 });
    assert_eq!(record.state.active.len(), 1);
    assert!(record.state.active[0].in_flight);
    let history = store.history(id, 0, 10).await.unwrap().expect("recorded");
    assert!(matches!(history[1].kind, SagaEventKind::StepStarted { .. }));
}

async fn a_create_whose_writes_end_the_saga_holds_no_lease(store: Box<dyn SagaStore>) {
    let saga = new_saga(Some("w#1"), LONG);
    let id = saga.id;
    let mut writes = vec![intent(id, 0), finished(id)];
    match store.create(saga, &mut writes).await.unwrap() {
        Created::New { version, lease } => {
            assert_eq!(version, 3);
            assert!(lease.is_none(), "a terminal saga holds no lease: {lease:?}");
        }
        Created::Existing(_) => panic!("a new id exists already"),
    }
    let record = store.load(id).await.unwrap().expect("recorded");
    assert_eq!(record.state.status, SagaStatus::Completed);
    assert!(record.lease.is_none());
}

async fn create_then_find_by_id_or_key(store: Box<dyn SagaStore>) {
    let mut saga = new_saga(Some("w#1"), LONG);
    saga.idempotency_key = Some("order-1".into());
    let id = saga.id;
    let mut again = saga.clone();
    assert!(matches!(
        store.create(saga, &mut Vec::new()).await.unwrap(),
        Created::New { version: 1, .. }
    ));
    match store.create(again.clone(), &mut Vec::new()).await.unwrap() {
        Created::Existing(record) => assert_eq!(record.id, id),
        _ => panic!("created twice by id"),
    }
    again.id = SagaId::new();
    match store.create(again, &mut Vec::new()).await.unwrap() {
        Created::Existing(record) => {
            assert_eq!(record.id, id);
            assert_eq!(record.idempotency_key.as_deref(), Some("order-1"));
        }
        _ => panic!("created twice by key"),
    }
    let record = store.load(id).await.unwrap().expect("recorded");
    assert_eq!(record.saga_type, "ConformanceSaga");
    assert_eq!(record.steps, ["a", "b"]);
    assert_eq!(record.state.status, SagaStatus::Pending);
    assert_eq!(record.version, 1);
    assert_eq!(record.lease.as_ref().map(|l| l.token), Some(1));
}

async fn writes_fold_into_the_state_and_history(store: Box<dyn SagaStore>) {
    let (id, fence) = create(&*store, "w#1", LONG).await;
    let mut writes = vec![intent(id, 0), intent(id, 0)];
    let version = store.write(id, fence, &mut writes).await.unwrap();
    assert!(writes.is_empty(), "taken out of the vector");
    assert_eq!(version, 3);
    let record = store.load(id).await.unwrap().unwrap();
    assert_eq!(record.version, 3);
    assert_eq!(record.state.status, SagaStatus::Running { step: 0 });
    assert!(record.state.active[0].in_flight);
    assert_eq!(
        store.history(id, 0, 100).await.unwrap().unwrap().len(),
        3,
        "saga started, then one entry per write"
    );
}

async fn a_stale_token_is_fenced_and_changes_nothing(store: Box<dyn SagaStore>) {
    let (id, stale) = create(&*store, "w#1", Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = store
        .acquire(Acquire::new(LeaseRequest::new("w2#1", LONG), 10))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "the expired saga is taken over");
    let record = taken.into_iter().next().unwrap().expect("decodes");
    let lease = record.lease.clone().unwrap();
    assert_eq!(
        (lease.token, &*lease.owner),
        (2, "w2#1"),
        "a new, greater token"
    );
    let error = store
        .write(id, stale, &mut vec![intent(id, 0)])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Fenced, "{error}");
    let after = store.load(id).await.unwrap().unwrap();
    assert_eq!(after.version, record.version, "nothing applied");
    assert_eq!(after.state, record.state);
    let release = store.release(id, stale, None).await.unwrap_err();
    assert_eq!(release.kind(), StoreErrorKind::Fenced);
    // The new owner writes.
    let fence = record.fence().unwrap();
    store
        .write(id, fence, &mut vec![intent(id, 0)])
        .await
        .unwrap();
}

/// A store that hands out slots (see [`SagaStore::slot`]): writes through one are the store's
/// writes, fenced the same. (A store without slots has nothing to check here.)
async fn a_slot_writes_as_the_store_does(store: Box<dyn SagaStore>) {
    assert!(
        store.slot(SagaId::new()).is_none(),
        "no slot for an unknown saga"
    );
    let (id, fence) = create(&*store, "w#1", Duration::from_millis(1)).await;
    let Some(slot) = store.slot(id) else {
        return;
    };
    let mut writes = vec![intent(id, 0), intent(id, 0)];
    let version = slot.write(fence, &mut writes).await.unwrap();
    assert!(writes.is_empty(), "taken out of the vector");
    assert_eq!(version, 3);
    let record = store.load(id).await.unwrap().unwrap();
    assert_eq!(record.version, 3);
    assert_eq!(record.state.status, SagaStatus::Running { step: 0 });
    assert_eq!(store.history(id, 0, 100).await.unwrap().unwrap().len(), 3);
    // A version it is not at is a conflict, through the slot as through the store.
    let error = slot
        .write(fence, &mut vec![intent(id, 0)])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Conflict, "{error}");
    // Taken over: the slot's old token is fenced, the new owner's writes land.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = acquired(&*store, Acquire::new(LeaseRequest::new("w2#1", LONG), 10)).await;
    assert_eq!(taken, [id]);
    let stale = Fence { version, ..fence };
    let error = slot
        .write(stale, &mut vec![intent(id, 0)])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Fenced, "{error}");
    let record = store.load(id).await.unwrap().unwrap();
    assert_eq!(record.version, 3, "nothing applied");
    let fence = record.fence().unwrap();
    let version = slot.write(fence, &mut vec![finished(id)]).await.unwrap();
    let record = store.load(id).await.unwrap().unwrap();
    assert_eq!(
        (record.version, record.state.status),
        (version, SagaStatus::Completed)
    );
    assert!(
        record.lease.is_none(),
        "a write that ends the saga ends its lease"
    );
    let error = slot
        .write(Fence { version, ..fence }, &mut vec![intent(id, 0)])
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        StoreErrorKind::Conflict,
        "a terminal saga never changes"
    );
}

async fn a_wrong_version_is_a_conflict(store: Box<dyn SagaStore>) {
    let (id, fence) = create(&*store, "w#1", LONG).await;
    let behind = Fence {
        version: fence.version + 5,
        ..fence
    };
    let error = store
        .write(id, behind, &mut vec![intent(id, 0)])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Conflict, "{error}");
    assert_eq!(store.load(id).await.unwrap().unwrap().version, 1);
}

async fn a_terminal_saga_never_changes(store: Box<dyn SagaStore>) {
    let (id, fence) = create(&*store, "w#1", LONG).await;
    let version = store
        .write(id, fence, &mut vec![finished(id)])
        .await
        .unwrap();
    let record = store.load(id).await.unwrap().unwrap();
    assert_eq!(record.state.status, SagaStatus::Completed);
    assert!(record.lease.is_none(), "a terminal saga has no lease");
    let fence = Fence { version, ..fence };
    let error = store
        .write(id, fence, &mut vec![intent(id, 0)])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Conflict, "{error}");
    assert_eq!(
        error.to_string(),
        format!("saga {id} is completed: a terminal saga never changes")
    );
    let taken = store
        .acquire(Acquire::new(LeaseRequest::new("w2#1", LONG), 10).reclaim_own(true))
        .await
        .unwrap();
    assert!(taken.is_empty(), "a terminal saga is never acquired");
    assert_eq!(store.load(id).await.unwrap().unwrap().version, version);
}

async fn acquire_skips_live_leases_and_takes_expired_ones(store: Box<dyn SagaStore>) {
    let (live, _) = create(&*store, "w1#1", LONG).await;
    let (expired, _) = create(&*store, "w1#1", Duration::from_millis(1)).await;
    let mut free = new_saga(None, LONG);
    free.saga_type = "OtherSaga";
    let free_id = free.id;
    store.create(free, &mut Vec::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let only_ours = Acquire::new(LeaseRequest::new("w2#1", LONG), 10).types(["ConformanceSaga"]);
    let taken: Vec<SagaId> = acquired(&*store, only_ours).await;
    assert_eq!(taken, [expired], "not the live lease, not another type");
    let record = store.load(expired).await.unwrap().unwrap();
    assert_eq!(record.state.recovery_attempts, 1, "taken from a worker");
    let any = Acquire::new(LeaseRequest::new("w2#1", LONG), 10);
    let taken: Vec<SagaId> = acquired(&*store, any).await;
    assert_eq!(taken, [free_id], "a saga never leased is free");
    let record = store.load(free_id).await.unwrap().unwrap();
    assert_eq!(record.state.recovery_attempts, 0, "not taken from anyone");
    assert_eq!(
        store
            .load(live)
            .await
            .unwrap()
            .unwrap()
            .lease
            .unwrap()
            .token,
        1,
        "untouched"
    );
}

async fn concurrent_acquires_never_share_a_saga(store: Box<dyn SagaStore>) {
    let store: Arc<dyn SagaStore> = Arc::from(store);
    let mut ids = Vec::new();
    for _ in 0..40 {
        let saga = new_saga(None, LONG);
        ids.push(saga.id);
        store.create(saga, &mut Vec::new()).await.unwrap();
    }
    let takers = (0..4).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let lease = LeaseRequest::new(format!("w{w}#1"), LONG);
                let page = store.acquire(Acquire::new(lease, 3)).await.unwrap();
                if page.is_empty() {
                    return mine;
                }
                mine.extend(page.into_iter().map(|r| r.expect("decodes").id));
            }
        })
    });
    let mut taken: Vec<SagaId> = Vec::new();
    for taker in takers {
        taken.extend(taker.await.unwrap());
    }
    taken.sort();
    ids.sort();
    assert_eq!(taken, ids, "each saga acquired exactly once");
}

async fn renew_keeps_and_release_frees(store: Box<dyn SagaStore>) {
    let (a, fence_a) = create(&*store, "w1#1", Duration::from_millis(300)).await;
    let (b, _) = create(&*store, "w1#1", Duration::from_millis(300)).await;
    let (other, _) = create(&*store, "w9#1", LONG).await;
    let held = store.renew("w1#1", &[a, other], LONG).await.unwrap();
    assert_eq!(
        held,
        [Held::new(a, 1, false)],
        "only the asked sagas it holds"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken: Vec<SagaId> =
        acquired(&*store, Acquire::new(LeaseRequest::new("w2#1", LONG), 10)).await;
    assert_eq!(
        taken,
        [b],
        "the renewed lease is live; the other one expired"
    );
    store.release(a, fence_a, None).await.unwrap();
    let taken: Vec<SagaId> =
        acquired(&*store, Acquire::new(LeaseRequest::new("w2#1", LONG), 10)).await;
    assert_eq!(taken, [a], "released, so free at once");
    let _ = other;
}

async fn reclaim_takes_an_earlier_incarnations_sagas_only(store: Box<dyn SagaStore>) {
    let (old, _) = create(&*store, "worker-a#1", LONG).await;
    let (current, _) = create(&*store, "worker-a#2", LONG).await;
    let (stranger, _) = create(&*store, "worker-b#1", LONG).await;
    let request = Acquire::new(LeaseRequest::new("worker-a#2", LONG), 10).reclaim_own(true);
    let taken: Vec<SagaId> = acquired(&*store, request).await;
    assert_eq!(taken, [old]);
    assert_eq!(
        store.load(old).await.unwrap().unwrap().lease.unwrap().token,
        2
    );
    for id in [current, stranger] {
        assert_eq!(
            store.load(id).await.unwrap().unwrap().lease.unwrap().token,
            1
        );
    }
}

async fn history_pages(store: Box<dyn SagaStore>) {
    let (id, fence) = create(&*store, "w#1", LONG).await;
    let mut writes: Vec<Write> = (0..9).map(|_| intent(id, 0)).collect();
    store.write(id, fence, &mut writes).await.unwrap();
    let all = store.history(id, 0, 100).await.unwrap().unwrap();
    assert_eq!(all.len(), 10);
    assert!(matches!(all[0].kind, SagaEventKind::SagaStarted { .. }));
    let page = store.history(id, 4, 3).await.unwrap().unwrap();
    assert_eq!(page, all[4..7]);
    assert!(store.history(id, 10, 5).await.unwrap().unwrap().is_empty());
}

async fn unknown_sagas_are_not_found(store: Box<dyn SagaStore>) {
    let id = SagaId::new();
    assert!(store.load(id).await.unwrap().is_none());
    assert!(store.history(id, 0, 10).await.unwrap().is_none());
    let fence = Fence {
        token: 1,
        version: 1,
    };
    let error = store
        .write(id, fence, &mut vec![intent(id, 0)])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::NotFound);
    assert_eq!(error.to_string(), format!("no saga with id {id}"));
}

/// Three `ConformanceSaga`s (the first completed, keyed `k1`) and one `OtherSaga`, created in
/// that order, a few milliseconds apart; and when the second was created, as the store has it.
async fn four_sagas(store: &dyn SagaStore) -> (Vec<SagaId>, SystemTime) {
    let mut ids = Vec::new();
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        let mut saga = new_saga(Some("w#1"), LONG);
        if i == 0 {
            saga.idempotency_key = Some("k1".into());
        }
        if i == 3 {
            saga.saga_type = "OtherSaga";
        }
        ids.push(saga.id);
        store.create(saga, &mut Vec::new()).await.unwrap();
    }
    let fence = Fence {
        token: 1,
        version: 1,
    };
    store
        .write(ids[0], fence, &mut vec![finished(ids[0])])
        .await
        .unwrap();
    let second = store.load(ids[1]).await.unwrap().unwrap().created_at;
    (ids, second)
}

async fn list_filters_and_pages(store: Box<dyn SagaStore>) {
    let (ids, second) = four_sagas(&*store).await;
    let listed = |query: SagaQuery| {
        let store = &store;
        async move {
            let page = store.list(query).await.unwrap();
            page.into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(SagaQuery::new()).await,
        ids,
        "every saga, in id order"
    );
    assert_eq!(listed(SagaQuery::new().status("completed")).await, ids[..1]);
    assert_eq!(listed(SagaQuery::new().status("pending")).await, ids[1..]);
    assert_eq!(
        listed(SagaQuery::new().saga_type("OtherSaga")).await,
        ids[3..]
    );
    assert_eq!(
        listed(SagaQuery::new().idempotency_key("k1")).await,
        ids[..1]
    );
    assert_eq!(
        listed(SagaQuery::new().created(Some(second), None)).await,
        ids[1..],
        "created at or after"
    );
    assert_eq!(
        listed(SagaQuery::new().created(None, Some(second))).await,
        ids[..1],
        "created before"
    );
    assert_eq!(listed(SagaQuery::new().limit(2)).await, ids[..2]);
    assert_eq!(
        listed(
            SagaQuery::new()
                .status("pending")
                .saga_type("ConformanceSaga")
                .created(Some(second), None)
                .after(ids[1])
                .limit(5)
        )
        .await,
        ids[2..3],
        "filters combined"
    );
    assert_eq!(
        listed(SagaQuery::new().after(ids[1]).limit(2)).await,
        ids[2..4],
        "the next page"
    );
    // The third waits on a durable timer an hour ahead.
    let wake = SystemTime::now() + Duration::from_secs(3_600);
    let fence = Fence {
        token: 1,
        version: 1,
    };
    store.release(ids[2], fence, Some(wake)).await.unwrap();
    assert_eq!(listed(SagaQuery::new().waiting()).await, ids[2..3]);
    let waiting = store.list(SagaQuery::new().waiting()).await.unwrap();
    let millis = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert_eq!(waiting[0].wake_at.map(millis), Some(millis(wake)));
    let summary = store
        .list(SagaQuery::new().limit(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(summary.saga_type, "ConformanceSaga");
    assert_eq!(summary.status, SagaStatus::Completed);
    assert_eq!(summary.idempotency_key.as_deref(), Some("k1"));
    assert_eq!(summary.owner, None, "a terminal saga has no lease");
}

async fn counts_by_type_and_status(store: Box<dyn SagaStore>) {
    four_sagas(&*store).await;
    let count = |saga_type: &str, status: &str, count| StatusCount {
        saga_type: saga_type.into(),
        status: status.into(),
        count,
    };
    assert_eq!(
        store.counts().await.unwrap(),
        [
            count("ConformanceSaga", "completed", 1),
            count("ConformanceSaga", "pending", 2),
            count("OtherSaga", "pending", 1),
        ]
    );
}
