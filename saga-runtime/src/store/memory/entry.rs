//! One saga as the in-memory store keeps it: its record, its history, its lease; and how a
//! write changes it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::history::Recorded;
use crate::event::SagaEvent;
use crate::store::{
    check_fence, Acquire, Change, Fence, Lease, LeaseRequest, NewSaga, SagaRecord, SagaState,
    SagaSummary, StoreError, StoredContext, Write,
};
use crate::{SagaId, SagaStatus};

#[derive(Debug)]
pub(super) struct Entry {
    /// The record, but for its type name and step names: they are the definition's
    /// `&'static str`s below, turned into strings only when the record is read.
    pub(super) record: Kept,
    /// What its state starts from, until the state is built.
    start: Start,
    pub(super) saga_type: &'static str,
    /// Shared by the sagas of its type kept one after another (see [`shared_names`]).
    pub(super) steps: Arc<[&'static str]>,
    /// Its writes in order: each one's event (but for the saga's id and type, the same in all)
    /// and what it changed.
    pub(super) history: Vec<Recorded>,
    /// How many of them are folded into the state (the first, the saga's start, is what the
    /// state starts from). The rest are folded in (by [`SagaState::apply_parts`], as every store
    /// does) when the state is read: the run that wrote them folded them already into its own
    /// copy of the state, and most sagas' states are never read back from this store, so folding
    /// on read spares every transition a second fold.
    folded: usize,
    /// The last token handed out, kept when the lease ends.
    pub(super) token: u64,
    pub(super) seq: u64,
    /// Not acquired before this time (a durable timer set by `release`).
    pub(super) wake_at: Option<SystemTime>,
}

/// A [`SagaRecord`] as an entry keeps it: every field but the type name and the step names
/// (whose empty strings would still take 48 bytes of every saga kept), and its state as its
/// status and, once the state is first read, the rest of it.
#[derive(Debug)]
pub(super) struct Kept {
    pub(super) id: SagaId,
    /// Always current.
    pub(super) status: SagaStatus<usize>,
    /// Built when first read (see [`Entry::state`]), then kept: most sagas' states are never read
    /// back from this store (their run has its own), and 200 bytes of every saga in flight would
    /// go to a copy nobody reads. Its status is the one above as of its last read.
    state: Option<Box<SagaState>>,
    pub(super) context: StoredContext,
    pub(super) idempotency_key: Option<String>,
    pub(super) version: u64,
    pub(super) lease: Option<Lease>,
    pub(super) cancel_requested: bool,
    pub(super) created_at: SystemTime,
    pub(super) updated_at: SystemTime,
}

/// What a saga's state starts from: [`SagaState::new`] with these.
#[derive(Debug)]
struct Start {
    deadline: Option<SystemTime>,
    pivot: Option<usize>,
    groups: Box<[Range<usize>]>,
}

impl Start {
    /// The state a saga starts in: what its first write (its start) leaves.
    fn state(&self) -> SagaState {
        SagaState::new(self.deadline)
            .with_pivot(self.pivot)
            .with_groups(self.groups.to_vec())
    }
}

/// Folds `writes` into `state`, whose status is first set to `status`, the one written last (as
/// when the state was kept whole and every write set its status).
fn fold(state: &mut SagaState, status: &SagaStatus<usize>, writes: &[Recorded]) {
    state.status.clone_from(status);
    for recorded in writes {
        state.apply_parts(None, &recorded.change(), recorded.at);
    }
}

impl Entry {
    /// The event of a write of this saga.
    pub(super) fn event(&self, recorded: &Recorded) -> SagaEvent {
        SagaEvent {
            saga_id: self.record.id,
            saga_type: Cow::Borrowed(self.saga_type),
            at: recorded.at,
            kind: recorded.kind(&self.steps),
        }
    }

    pub(super) fn new(saga: NewSaga, seq: u64) -> Self {
        let NewSaga {
            id,
            saga_type,
            steps,
            context,
            idempotency_key,
            deadline,
            started,
            lease,
            pivot,
            groups,
        } = saga;
        let now = started.at;
        let token = u64::from(lease.is_some());
        let record = Kept {
            id,
            status: SagaState::new(deadline).status,
            state: None,
            context,
            idempotency_key,
            version: 1,
            // From the saga's start: the time its creator just read.
            lease: lease.map(|l| lease_for(l, token, now)),
            cancel_requested: false,
            created_at: now,
            updated_at: now,
        };
        // Room for the whole history of a saga that goes straight through (its start, two
        // events per step, its end), taken at once. Room for the first step only, grown later,
        // kept memory per saga waiting in its first step, but growing it cost each saga
        // microseconds with thousands in flight (10,000 at once: 182 ms against 139 ms): the
        // allocator's slow path, freeing a medium block among thousands.
        let mut history = Vec::with_capacity(2 * steps.len() + 2);
        history.push(Recorded::new(
            started.at,
            started.kind,
            Change::None,
            &steps,
        ));
        Entry {
            record,
            start: Start {
                deadline,
                pivot,
                groups: groups.into_boxed_slice(),
            },
            saga_type,
            folded: 1,
            steps: shared_names(steps),
            history,
            token,
            seq,
            wake_at: None,
        }
    }

    /// Whether `acquire` may take it now: no live lease, and due (or held by an earlier
    /// incarnation of the acquiring worker, when it reclaims its own).
    pub(super) fn acquirable(&self, request: &Acquire, now: SystemTime) -> bool {
        match &self.record.lease {
            Some(lease)
                if request.reclaim_own
                    && earlier_incarnation(&lease.owner, &request.lease.owner) =>
            {
                true
            }
            Some(lease) if lease.expires_at > now => false,
            _ => request.only.is_some() || self.wake_at.is_none_or(|wake| wake <= now),
        }
    }

    /// Records a write: its status and context at once, its change when the state is next read.
    pub(super) fn push(&mut self, write: Write) {
        let Write {
            event,
            change,
            status,
            context,
        } = write;
        let record = &mut self.record;
        if let Some(status) = status {
            record.status = status;
        }
        if let Some(context) = context {
            record.context = context;
        }
        record.updated_at = event.at;
        let recorded = Recorded::new(event.at, event.kind, change, &self.steps);
        self.history.push(recorded);
        record.version = self.history.len() as u64;
    }

    /// Applies `writes` in order if `fence` holds (always, for `None`: a new saga's first
    /// writes), taking them out of the vector; a write that ends the saga ends its lease too.
    /// The saga's new version.
    pub(super) fn apply(
        &mut self,
        fence: Option<Fence>,
        writes: &mut Vec<Write>,
    ) -> Result<u64, StoreError> {
        if let Some(fence) = fence {
            let record = &self.record;
            let checked = check_fence(
                record.id,
                fence,
                self.lease_token(),
                &record.status,
                record.version,
            );
            if let Err(error) = checked {
                writes.clear();
                return Err(error);
            }
        }
        for write in writes.drain(..) {
            self.push(write);
        }
        if self.record.status.is_terminal() {
            self.record.lease = None;
        }
        Ok(self.record.version)
    }

    /// Whether it ended and is forgotten past the retention limit: a key is a promise that the
    /// saga runs once, so a keyed saga is kept.
    pub(super) fn forgettable(&self) -> bool {
        self.record.status.is_terminal() && self.record.idempotency_key.is_none()
    }

    /// Its state as of every write: built the first time it is read, then the writes since its
    /// last read folded in.
    pub(super) fn state(&mut self) -> &mut SagaState {
        let start = &self.start;
        let state = self
            .record
            .state
            .get_or_insert_with(|| Box::new(start.state()));
        fold(state, &self.record.status, &self.history[self.folded..]);
        self.folded = self.history.len();
        state
    }

    /// When it is due next by its state, without keeping a state built for the question (a
    /// listing asks it of every saga kept, and most sagas' states are never otherwise read).
    fn due_by_state(&self) -> Option<SystemTime> {
        let (mut state, folded) = match &self.record.state {
            Some(state) => (state.as_ref().clone(), self.folded),
            None => (self.start.state(), 1),
        };
        fold(&mut state, &self.record.status, &self.history[folded..]);
        state.wake_at()
    }

    /// The full record, as the writes since it was created made it.
    pub(super) fn record(&mut self) -> SagaRecord {
        let state = self.state().clone();
        let record = &self.record;
        SagaRecord {
            id: record.id,
            saga_type: self.saga_type.to_owned(),
            steps: self.steps.iter().map(|s| (*s).to_owned()).collect(),
            state,
            context: record.context.clone(),
            idempotency_key: record.idempotency_key.clone(),
            version: record.version,
            lease: record.lease.clone(),
            cancel_requested: record.cancel_requested,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }

    /// What a listing shows of it.
    pub(super) fn summary(&self) -> SagaSummary {
        let wake_at = self.wake_at.or_else(|| self.due_by_state());
        let record = &self.record;
        SagaSummary {
            id: record.id,
            saga_type: self.saga_type.to_owned(),
            status: record.status.clone(),
            idempotency_key: record.idempotency_key.clone(),
            owner: record.lease.as_ref().map(|l| l.owner.to_string()),
            wake_at,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }

    /// Whether its state was built (see [`Entry::state`]).
    #[cfg(test)]
    pub(super) fn state_built(&self) -> bool {
        self.record.state.is_some()
    }

    /// The token of the lease on it, if there is one.
    pub(super) fn lease_token(&self) -> Option<u64> {
        self.record.lease.as_ref().map(|l| l.token)
    }
}

/// `steps` as an entry keeps them: the step names of the last saga kept on this thread, when
/// they are the same (as they are for sagas of one type, whose names are their definition's
/// statics), else a copy. Most sagas then keep no names of their own: 48 bytes fewer for each of
/// a three-step type, and no lock to find them.
pub(super) fn shared_names(steps: Vec<&'static str>) -> Arc<[&'static str]> {
    thread_local! {
        static LAST: RefCell<Option<Arc<[&'static str]>>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some(names) if **names == *steps => names.clone(),
            _ => {
                let names: Arc<[&'static str]> = steps.into();
                *last = Some(names.clone());
                names
            }
        }
    })
}

/// Whether `held` names the same worker as `me` (`{name}#{incarnation}`), in another
/// incarnation.
fn earlier_incarnation(held: &str, me: &str) -> bool {
    match (held.split_once('#'), me.split_once('#')) {
        (Some((held_name, _)), Some((name, _))) => held_name == name && held != me,
        _ => false,
    }
}

pub(super) fn lease_for(request: LeaseRequest, token: u64, now: SystemTime) -> Lease {
    Lease {
        owner: request.owner,
        token,
        expires_at: expiry(now, request.duration),
    }
}

/// `now + duration`, or as far as the clock goes.
pub(super) fn expiry(now: SystemTime, duration: Duration) -> SystemTime {
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
