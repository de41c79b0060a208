//! The in-memory store's own rules: what it forgets, and what it keeps.
use std::borrow::Cow;
use std::sync::Arc;

use futures_util::FutureExt;

use super::*;
use crate::event::SagaEventKind;
use crate::machine::Change;
use crate::store::StoredContext;
use crate::SagaStatus;

fn new_saga(key: &str) -> NewSaga {
    let id = SagaId::new();
    let started = SagaEvent {
        saga_id: id,
        saga_type: Cow::Borrowed("OrderSaga"),
        at: SystemTime::now(),
        kind: SagaEventKind::SagaStarted { steps: Vec::new() },
    };
    let mut saga = NewSaga::new(
        id,
        "OrderSaga",
        vec!["a"],
        StoredContext::live(Arc::new(7u32)),
        started,
    );
    saga.idempotency_key = Some(key.to_owned());
    saga.lease = Some(LeaseRequest::new("w#1", Duration::from_secs(60)));
    saga
}

fn create(store: &MemoryStore, saga: NewSaga) -> Created {
    store
        .create(saga, &mut Vec::new())
        .now_or_never()
        .unwrap()
        .unwrap()
}

/// Ends saga `id` through the store's `write`, or through the saga's slot as a run does.
fn finish_through(store: &MemoryStore, id: SagaId, slot: bool) {
    let event = SagaEvent {
        saga_id: id,
        saga_type: Cow::Borrowed("OrderSaga"),
        at: SystemTime::now(),
        kind: SagaEventKind::SagaCompleted {
            duration: Duration::ZERO,
        },
    };
    let write = Write::new(event, Change::None).with_status(Some(SagaStatus::Completed));
    let fence = Fence {
        token: 1,
        version: 1,
    };
    let written = match slot {
        true => store
            .slot(id)
            .expect("a slot")
            .write(fence, &mut vec![write])
            .now_or_never(),
        false => store.write(id, fence, &mut vec![write]).now_or_never(),
    };
    written.unwrap().unwrap();
}

fn finish(store: &MemoryStore, id: SagaId) {
    finish_through(store, id, false);
}

#[test]
fn the_oldest_ended_sagas_without_a_key_are_forgotten_and_keyed_ones_kept() {
    let store = MemoryStore::with_retention(2);
    let keyless = |key| {
        let mut saga = new_saga(key);
        saga.idempotency_key = None;
        saga
    };
    let sagas: Vec<NewSaga> = ["a", "b", "c"].map(keyless).into();
    let ids: Vec<SagaId> = sagas.iter().map(|s| s.id).collect();
    let keyed = new_saga("keyed");
    let keyed_id = keyed.id;
    let running = keyless("running");
    let running_id = running.id;
    create(&store, keyed);
    create(&store, running);
    finish(&store, keyed_id);
    for saga in sagas {
        create(&store, saga);
    }
    // The middle one as a run ends it: its end counts as the others' do.
    for (n, &id) in ids.iter().enumerate() {
        finish_through(&store, id, n == 1);
    }
    let load = |id| store.load(id).now_or_never().unwrap().unwrap();
    assert!(
        load(ids[0]).is_none(),
        "the oldest keyless one is forgotten"
    );
    assert!(load(ids[1]).is_some());
    assert!(load(ids[2]).is_some());
    assert!(load(running_id).is_some(), "running sagas are kept");
    assert!(load(keyed_id).is_some(), "keyed sagas are kept");
    // Its key still finds it: the saga does not run again.
    let again = create(&store, new_saga("keyed"));
    assert!(matches!(&again, Created::Existing(record) if record.id == keyed_id));
}

#[test]
fn sagas_of_one_type_share_their_step_names() {
    let first = super::entry::shared_names(vec!["reserve", "charge"]);
    let second = super::entry::shared_names(vec!["reserve", "charge"]);
    assert!(Arc::ptr_eq(&first, &second));
    let other = super::entry::shared_names(vec!["reserve", "ship"]);
    assert_eq!(&*other, ["reserve", "ship"]);
    assert_eq!(&*first, ["reserve", "charge"]);
    // The names of the type kept last are the ones shared.
    let again = super::entry::shared_names(vec!["reserve", "charge"]);
    assert!(!Arc::ptr_eq(&first, &again));
    assert_eq!(&*again, ["reserve", "charge"]);
}

#[test]
fn a_listing_reads_a_retry_time_without_keeping_a_state_and_a_load_keeps_one() {
    let store = MemoryStore::new();
    let saga = new_saga("retrying");
    let id = saga.id;
    create(&store, saga);
    let at = SystemTime::now();
    let event = |kind| SagaEvent {
        saga_id: id,
        saga_type: Cow::Borrowed("OrderSaga"),
        at,
        kind,
    };
    let started = Write::new(
        event(SagaEventKind::StepStarted {
            step: Cow::Borrowed("a"),
            phase: crate::Phase::Action,
            attempt: 1,
        }),
        Change::AttemptStarted {
            step: 0,
            phase: crate::Phase::Action,
            attempt: 1,
        },
    )
    .with_status(Some(SagaStatus::Running { step: 0 }));
    let delay = Duration::from_secs(5);
    let error = crate::StepError::transient("busy");
    let retry = Write::new(
        event(SagaEventKind::RetryScheduled {
            step: Cow::Borrowed("a"),
            phase: crate::Phase::Action,
            attempt: 1,
            delay,
            error: error.clone(),
        }),
        Change::RetryScheduled(Box::new(crate::machine::RetryScheduled::new(
            0,
            crate::Phase::Action,
            delay,
            error,
        ))),
    );
    let fence = Fence {
        token: 1,
        version: 1,
    };
    store
        .write(id, fence, &mut vec![started, retry])
        .now_or_never()
        .unwrap()
        .unwrap();

    let listed = store
        .list(SagaQuery::new())
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].wake_at, Some(at + delay));
    assert!(!store.lock().entry(&id).unwrap().state_built());

    let record = store.load(id).now_or_never().unwrap().unwrap().unwrap();
    assert_eq!(record.state.wake_at(), Some(at + delay));
    assert_eq!(record.state.status, SagaStatus::Running { step: 0 });
    assert!(store.lock().entry(&id).unwrap().state_built());
    // Listed again, from the state kept.
    let listed = store
        .list(SagaQuery::new())
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(listed[0].wake_at, Some(at + delay));
}
