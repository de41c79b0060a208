//! The in-memory store: the default, for tests and for sagas that need not survive a restart.

use std::borrow::Cow;
use std::collections::hash_map;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::{
    check_fence, Acquire, Admission, Change, CorruptRecord, Created, Fence, Held, Lease,
    LeaseRequest, NewSaga, Requested, SagaQuery, SagaRecord, SagaState, SagaStore, SagaSummary,
    StatusCount, StoreError, StoreFuture, Write,
};
use crate::event::{SagaEvent, SagaEventKind};
use crate::id::IdMap;
use crate::{OperatorRequest, Refusal, SagaId, SagaShape};

/// Keeps sagas in a map, for as long as the store lives, with one exception so that a
/// long-running program does not grow without bound: ended sagas started without an idempotency
/// key are forgotten oldest first beyond the retention limit (default
/// [`Self::DEFAULT_RETENTION`]); `status(id)` of a forgotten saga is `NotFound`. A saga started with
/// an idempotency key is never forgotten: a second start with its key returns it, never runs the
/// saga again, however many sagas ended since. (For sagas and keys that outlive the process, use
/// a durable store.)
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    retention: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Boxed: the table stays small (a few hundred KB for the default retention rather than
    /// megabytes, most of it empty buckets), so lookups and the table's periodic rehashes touch
    /// little memory.
    sagas: IdMap<Box<Entry>>,
    by_key: HashMap<String, SagaId>,
    finished: VecDeque<SagaId>,
    /// Creation order, for `acquire`'s "oldest first".
    seq: u64,
    /// The saga type shapes recorded, oldest first.
    types: Vec<SagaShape>,
}

#[derive(Debug)]
struct Entry {
    /// The record, but for its type name and step names, which stay empty here: they are the
    /// definition's `&'static str`s below, turned into strings only when the record is read.
    ///
    /// Its state's status is always current; the rest of its state is as of the changes folded
    /// so far (see `folded`).
    record: SagaRecord,
    saga_type: &'static str,
    steps: Vec<&'static str>,
    /// Its writes in order: each one's event (but for the saga's id and type, the same in all)
    /// and what it changed.
    history: Vec<Recorded>,
    /// How many of them are folded into the state. The rest are folded in (by
    /// [`SagaState::apply_parts`], as every store does) when the state is read: the run that
    /// wrote them folded them already into its own copy of the state, and most sagas' states are
    /// never read back from this store, so folding on read spares every transition a second fold.
    folded: usize,
    /// The last token handed out, kept when the lease ends.
    token: u64,
    seq: u64,
    /// Not acquired before this time (a durable timer set by `release`).
    wake_at: Option<SystemTime>,
}

/// One write, as an entry keeps it.
#[derive(Debug)]
struct Recorded {
    at: SystemTime,
    kind: SagaEventKind,
    change: Change,
}

impl Recorded {
    fn new(event: SagaEvent, change: Change) -> Self {
        Recorded {
            at: event.at,
            kind: event.kind,
            change,
        }
    }
}

impl Entry {
    /// The event of a write of this saga.
    fn event(&self, recorded: &Recorded) -> SagaEvent {
        SagaEvent {
            saga_id: self.record.id,
            saga_type: Cow::Borrowed(self.saga_type),
            at: recorded.at,
            kind: recorded.kind.clone(),
        }
    }

    fn new(saga: NewSaga, seq: u64) -> Self {
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
        let record = SagaRecord {
            id,
            // Empty names allocate nothing.
            saga_type: String::new(),
            steps: Vec::new(),
            state: SagaState::new(deadline)
                .with_pivot(pivot)
                .with_groups(groups),
            context,
            idempotency_key,
            version: 1,
            // From the saga's start: the time its creator just read.
            lease: lease.map(|l| lease_for(l, token, now)),
            cancel_requested: false,
            created_at: now,
            updated_at: now,
        };
        // Room for its start, its first step's two events and one more, and no more before it
        // needs them: an entry is over a hundred bytes, and a saga waiting in its first step
        // would keep the room of its whole history (two events per step, its start and end).
        let mut history = Vec::with_capacity((2 * steps.len() + 2).min(4));
        history.push(Recorded::new(started, Change::None));
        Entry {
            record,
            saga_type,
            folded: 1,
            steps,
            history,
            token,
            seq,
            wake_at: None,
        }
    }

    /// Whether `acquire` may take it now: no live lease, and due (or held by an earlier
    /// incarnation of the acquiring worker, when it reclaims its own).
    fn acquirable(&self, request: &Acquire, now: SystemTime) -> bool {
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
    fn push(&mut self, write: Write) {
        let record = &mut self.record;
        if let Some(status) = write.status {
            record.state.status = status;
        }
        if let Some(context) = write.context {
            record.context = context;
        }
        record.updated_at = write.event.at;
        self.history.push(Recorded::new(write.event, write.change));
        record.version = self.history.len() as u64;
    }

    /// Folds the changes written since the state was last read into it.
    fn fold(&mut self) {
        for recorded in &self.history[self.folded..] {
            // The status was applied when it was written.
            let state = &mut self.record.state;
            state.apply_parts(None, &recorded.change, recorded.at);
        }
        self.folded = self.history.len();
    }

    /// The full record, as the writes since it was created made it.
    fn record(&mut self) -> SagaRecord {
        self.fold();
        SagaRecord {
            saga_type: self.saga_type.to_owned(),
            steps: self.steps.iter().map(|s| (*s).to_owned()).collect(),
            ..self.record.clone()
        }
    }

    /// What a listing shows of it.
    fn summary(&self) -> SagaSummary {
        let record = &self.record;
        SagaSummary {
            id: record.id,
            saga_type: self.saga_type.to_owned(),
            status: record.state.status.clone(),
            idempotency_key: record.idempotency_key.clone(),
            owner: record.lease.as_ref().map(|l| l.owner.to_string()),
            wake_at: self.wake_at.or_else(|| record.state.wake_at()),
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }

    /// The token of the lease on it, if there is one.
    fn lease_token(&self) -> Option<u64> {
        self.record.lease.as_ref().map(|l| l.token)
    }
}

/// Whether `held` names the same worker as `me` (`{name}#{incarnation}`), in another
/// incarnation.
fn earlier_incarnation(held: &str, me: &str) -> bool {
    match (held.split_once('#'), me.split_once('#')) {
        (Some((held_name, _)), Some((name, _))) => held_name == name && held != me,
        _ => false,
    }
}

fn lease_for(request: LeaseRequest, token: u64, now: SystemTime) -> Lease {
    Lease {
        owner: request.owner,
        token,
        expires_at: expiry(now, request.duration),
    }
}

/// `now + duration`, or as far as the clock goes.
fn expiry(now: SystemTime, duration: Duration) -> SystemTime {
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl MemoryStore {
    /// Default number of ended sagas without an idempotency key kept.
    pub const DEFAULT_RETENTION: usize = 10_000;

    /// A store keeping the last [`Self::DEFAULT_RETENTION`] ended sagas without a key (and every
    /// saga with one).
    pub fn new() -> Self {
        Self::with_retention(Self::DEFAULT_RETENTION)
    }

    /// A store keeping the last `retention` ended sagas without a key (running ones, and those
    /// with a key, are always kept).
    pub fn with_retention(retention: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            retention,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write: a request is checked
        // whole before anything of it is applied. Going on is safe.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    /// Applies `writes` to saga `id` in order if `fence` holds (always, for `None`: a new saga's
    /// first writes), taking them out of the vector.
    fn apply(
        &mut self,
        id: SagaId,
        fence: Option<Fence>,
        writes: &mut Vec<Write>,
        retention: usize,
    ) -> Result<u64, StoreError> {
        let Some(entry) = self.sagas.get_mut(&id) else {
            writes.clear();
            return Err(StoreError::not_found(id));
        };
        let record = &entry.record;
        if let Some(fence) = fence {
            let checked = check_fence(
                id,
                fence,
                entry.lease_token(),
                &record.state.status,
                record.version,
            );
            if let Err(error) = checked {
                writes.clear();
                return Err(error);
            }
        }
        for write in writes.drain(..) {
            entry.push(write);
        }
        let record = &mut entry.record;
        let version = record.version;
        if record.state.status.is_terminal() {
            record.lease = None;
            // A key is a promise that the saga runs once: a keyed saga is kept.
            if record.idempotency_key.is_none() {
                self.finished.push_back(id);
                self.evict(retention);
            }
        }
        Ok(version)
    }

    /// Forgets the oldest terminal sagas beyond `retention`.
    fn evict(&mut self, retention: usize) {
        while self.finished.len() > retention {
            let Some(old) = self.finished.pop_front() else {
                break;
            };
            // A retried saga is listed twice; only forget it once it is terminal.
            if let hash_map::Entry::Occupied(entry) = self.sagas.entry(old) {
                if entry.get().record.state.status.is_terminal() {
                    if let Some(key) = entry.remove().record.idempotency_key {
                        self.by_key.remove(&key);
                    }
                }
            }
        }
    }
}

impl SagaStore for MemoryStore {
    fn create<'a>(&'a self, saga: NewSaga, writes: &mut Vec<Write>) -> StoreFuture<'a, Created> {
        let mut inner = self.lock();
        let existing = inner.sagas.get(&saga.id).map(|e| e.record.id).or_else(|| {
            saga.idempotency_key
                .as_ref()
                .and_then(|k| inner.by_key.get(k).copied())
        });
        if let Some(entry) = existing.and_then(|id| inner.sagas.get_mut(&id)) {
            let record = Box::new(entry.record());
            writes.clear();
            return StoreFuture::ready(Ok(Created::Existing(record)));
        }
        if let Some(key) = &saga.idempotency_key {
            inner.by_key.insert(key.clone(), saga.id);
        }
        let id = saga.id;
        inner.seq += 1;
        let entry = Entry::new(saga, inner.seq);
        inner.sagas.insert(id, Box::new(entry));
        let result = match writes.is_empty() {
            true => Ok(1),
            false => inner.apply(id, None, writes, self.retention),
        };
        // Read after the first writes: writes that end the saga end its lease too.
        let lease = inner.sagas.get(&id).and_then(|e| e.record.lease.clone());
        StoreFuture::ready(result.map(|version| Created::New { version, lease }))
    }

    fn write<'a>(
        &'a self,
        id: SagaId,
        fence: Fence,
        writes: &mut Vec<Write>,
    ) -> StoreFuture<'a, u64> {
        StoreFuture::ready(self.lock().apply(id, Some(fence), writes, self.retention))
    }

    fn acquire(&self, request: Acquire) -> StoreFuture<'_, Vec<Result<SagaRecord, CorruptRecord>>> {
        let mut inner = self.lock();
        let now = SystemTime::now();
        let mut candidates: Vec<(u64, SagaId)> = inner
            .sagas
            .iter()
            .filter(|(_, e)| !e.record.state.status.is_terminal())
            .filter(|(_, e)| {
                request
                    .types
                    .as_ref()
                    .is_none_or(|types| types.iter().any(|t| t == e.saga_type))
            })
            .filter(|(id, _)| request.only.is_none_or(|only| only == **id))
            .filter(|(_, e)| e.acquirable(&request, now))
            .map(|(id, e)| (e.seq, *id))
            .collect();
        candidates.sort_unstable();
        candidates.truncate(request.limit);
        let records = candidates
            .into_iter()
            .map(|(_, id)| {
                let entry = inner.sagas.get_mut(&id).expect("a candidate exists");
                entry.token += 1;
                let taken_over = entry.record.lease.is_some();
                entry.record.lease = Some(lease_for(request.lease.clone(), entry.token, now));
                entry.wake_at = None;
                entry.fold();
                if taken_over {
                    entry.record.state.recovery_attempts += 1;
                }
                Ok(entry.record())
            })
            .collect();
        StoreFuture::ready(Ok(records))
    }

    fn renew(&self, owner: &str, ids: &[SagaId], duration: Duration) -> StoreFuture<'_, Vec<Held>> {
        let mut inner = self.lock();
        let expires_at = expiry(SystemTime::now(), duration);
        let held = ids
            .iter()
            .filter_map(|id| {
                let record = &mut inner.sagas.get_mut(id)?.record;
                let cancel_requested = record.cancel_requested;
                let lease = record.lease.as_mut()?;
                (&*lease.owner == owner).then(|| {
                    lease.expires_at = expires_at;
                    Held::new(*id, lease.token, cancel_requested)
                })
            })
            .collect();
        StoreFuture::ready(Ok(held))
    }

    fn release(
        &self,
        id: SagaId,
        fence: Fence,
        wake_at: Option<SystemTime>,
    ) -> StoreFuture<'_, ()> {
        let mut inner = self.lock();
        let result = match inner.sagas.get_mut(&id) {
            None => Err(StoreError::not_found(id)),
            Some(entry) => check_fence(
                id,
                fence,
                entry.lease_token(),
                &entry.record.state.status,
                entry.record.version,
            )
            .map(|()| {
                entry.record.lease = None;
                entry.wake_at = wake_at;
            }),
        };
        StoreFuture::ready(result)
    }

    fn next_wake(&self, types: Option<Vec<String>>) -> StoreFuture<'_, Option<SystemTime>> {
        let inner = self.lock();
        let now = SystemTime::now();
        let next = inner
            .sagas
            .values()
            .filter(|e| !e.record.state.status.is_terminal())
            .filter(|e| e.record.lease.as_ref().is_none_or(|l| l.expires_at <= now))
            .filter(|e| {
                types
                    .as_ref()
                    .is_none_or(|types| types.iter().any(|t| t == e.saga_type))
            })
            .filter_map(|e| e.wake_at.filter(|wake| *wake > now))
            .min();
        StoreFuture::ready(Ok(next))
    }

    fn request(
        &self,
        id: SagaId,
        request: OperatorRequest,
        lease: Option<LeaseRequest>,
    ) -> StoreFuture<'_, Result<SagaRecord, Refusal>> {
        let mut inner = self.lock();
        let Some(entry) = inner.sagas.get_mut(&id) else {
            return StoreFuture::ready(Err(StoreError::not_found(id)));
        };
        entry.fold();
        let now = SystemTime::now();
        let saga = Requested {
            id,
            saga_type: entry.saga_type,
            steps: entry.steps.len(),
            at: now,
        };
        let admission = match entry.record.state.admit(request, saga) {
            Ok(admission) => admission,
            Err(refusal) => return StoreFuture::ready(Ok(Err(refusal))),
        };
        match admission {
            Admission::Cancel => entry.record.cancel_requested = true,
            Admission::Reopen(write) => {
                entry.push(*write);
                entry.fold();
                if let Some(lease) = lease {
                    entry.token += 1;
                    entry.record.lease = Some(lease_for(lease, entry.token, now));
                }
            }
        }
        if entry
            .record
            .lease
            .as_ref()
            .is_none_or(|l| l.expires_at <= now)
        {
            // No live worker holds it: it is due at once.
            entry.wake_at = None;
        }
        StoreFuture::ready(Ok(Ok(entry.record())))
    }

    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>> {
        let record = self.lock().sagas.get_mut(&id).map(|e| e.record());
        StoreFuture::ready(Ok(record))
    }

    fn history(
        &self,
        id: SagaId,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'_, Option<Vec<SagaEvent>>> {
        let history = self.lock().sagas.get(&id).map(|e| {
            let from = usize::try_from(from).unwrap_or(usize::MAX);
            let events = e.history.iter().skip(from).take(limit);
            events.map(|recorded| e.event(recorded)).collect()
        });
        StoreFuture::ready(Ok(history))
    }

    fn list(&self, query: SagaQuery) -> StoreFuture<'_, Vec<SagaSummary>> {
        let inner = self.lock();
        let mut page: Vec<SagaSummary> = inner
            .sagas
            .values()
            .map(|e| e.summary())
            .filter(|s| query.matches(s))
            .collect();
        page.sort_unstable_by_key(|s| s.id);
        page.truncate(query.limit);
        StoreFuture::ready(Ok(page))
    }

    fn record_type(&self, shape: SagaShape) -> StoreFuture<'_, ()> {
        let mut inner = self.lock();
        if !inner.types.contains(&shape) {
            inner.types.push(shape);
        }
        StoreFuture::ready(Ok(()))
    }

    fn saga_types(&self) -> StoreFuture<'_, Vec<SagaShape>> {
        let mut types = self.lock().types.clone();
        // By name, newest first: a stable sort of the reversed recording order.
        types.reverse();
        types.sort_by(|a, b| a.name.cmp(&b.name));
        StoreFuture::ready(Ok(types))
    }

    fn counts(&self) -> StoreFuture<'_, Vec<StatusCount>> {
        let inner = self.lock();
        let mut counts: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
        for entry in inner.sagas.values() {
            *counts
                .entry((entry.saga_type, entry.record.state.status.name()))
                .or_default() += 1;
        }
        let counts = counts
            .into_iter()
            .map(|((saga_type, status), count)| StatusCount {
                saga_type: saga_type.to_owned(),
                status: status.to_owned(),
                count,
            })
            .collect();
        StoreFuture::ready(Ok(counts))
    }

    fn shared(&self) -> bool {
        false
    }

    fn encodes(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
