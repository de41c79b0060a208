//! The engine's background work: renewing its leases, claiming sagas no live worker holds,
//! firing durable timers, and recovery.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Engine, EngineInner, RecoveryReport};
use crate::executor::{self, Claim};
use crate::failpoint;
use crate::id::IdMap;
use crate::store::{Acquire, CorruptRecord, SagaRecord};
use crate::{SagaError, SagaId};

impl Engine {
    /// Starts the task that renews this engine's leases and, if it has registered saga types,
    /// claims sagas that no live worker holds, unless it runs already (on this tokio runtime).
    /// Only for stores other processes share.
    pub(crate) fn ensure_background(&self) {
        if !self.inner.shared {
            return;
        }
        let mut background = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if background.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        *background = Some(runtime.spawn(background_loop(weak, self.inner.worker.interval)));
        drop(background);
        // A saga of a registered type may have been let go waiting for a reply: whichever
        // engine runs the type takes it when the reply comes, without having sent anything.
        for name in self.registered_types() {
            self.consume_replies_of(&name);
        }
    }

    /// Takes over every saga that no live worker holds (its worker stopped, or let it go), and
    /// every saga an earlier incarnation of this worker held (same worker name), and resumes
    /// them: call it when the engine starts. The engine goes on doing this in the background for
    /// its registered saga types, for as long as it lives.
    ///
    /// Sagas are acquired in pages and at most a bounded number recover at once, so a large
    /// backlog never sits in memory whole; this returns once every saga of the backlog has been
    /// resumed or parked (resumed sagas go on in the background). A saga is parked, with a
    /// reason and a `saga parked` event, when its type is not registered, when this program's
    /// definition of its type has other steps than the one it started with, when its stored
    /// context does not decode, or when it was taken over too many times in a row without
    /// progress (it may be what crashes its workers). A bad record never stops the others.
    pub async fn recover(&self) -> Result<RecoveryReport, SagaError> {
        const PAGE: usize = 100;
        self.ensure_background();
        let mut report = RecoveryReport::default();
        loop {
            let request = Acquire::new(self.lease_request(), PAGE).reclaim_own(true);
            let page = self.inner.store.acquire(request).await?;
            let full = page.len() == PAGE;
            for record in page {
                match record {
                    Ok(record) => self.recover_one(&mut report, record, true).await?,
                    Err(corrupt) => self.park_corrupt(&mut report, corrupt).await?,
                }
            }
            if !full {
                return Ok(report);
            }
        }
    }

    /// Stops this engine's run of `id`, whose lease another acquisition replaced.
    fn stop_stale_run(&self, id: SagaId) {
        let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cancel) = running.get(&id) {
            self.inner.count_lost();
            cancel.lose();
        }
    }

    async fn park_corrupt(
        &self,
        report: &mut RecoveryReport,
        corrupt: CorruptRecord,
    ) -> Result<(), SagaError> {
        let (Ok(id), Some(fence)) = (corrupt.id.parse::<SagaId>(), corrupt.fence) else {
            report.unreadable.push((corrupt.id, corrupt.message));
            return Ok(());
        };
        let reason = format!("its record does not decode: {}", corrupt.message);
        executor::park(self, id, &corrupt.saga_type, fence, reason.clone()).await?;
        report.parked.push((id, reason));
        Ok(())
    }

    /// Resumes (in the background) or parks one acquired saga. Without `wait_for_room`, a saga
    /// is only resumed if there is room at once (the background claimer asks for no more).
    async fn recover_one(
        &self,
        report: &mut RecoveryReport,
        record: SagaRecord,
        wait_for_room: bool,
    ) -> Result<(), SagaError> {
        let id = record.id;
        let Some(fence) = record.fence() else {
            return Ok(());
        };
        let Some(registered) = self.inner.registry.get(record.saga_type.as_str()) else {
            let reason = format!(
                "no saga type `{}` is registered with this engine (EngineBuilder::register, or \
                 register_definition for a built one)",
                record.saga_type
            );
            executor::park(self, id, &record.saga_type, fence, reason.clone()).await?;
            report.parked.push((id, reason));
            return Ok(());
        };
        let start = match (registered.resume)(self, &record) {
            Ok(start) => start,
            Err(reason) => {
                executor::park(self, id, &record.saga_type, fence, reason.clone()).await?;
                report.parked.push((id, reason));
                return Ok(());
            }
        };
        let Some(claim) = Claim::take(self, id) else {
            // Still running here under the lease that expired (this process stalled past it):
            // that run is stale now, so it stops, and the new lease is given up rather than held
            // by nobody; whichever worker acquires the saga next resumes it.
            self.stop_stale_run(id);
            self.inner.store.release(id, fence, None).await?;
            report.released.push(id);
            return Ok(());
        };
        let semaphore = Arc::clone(&self.inner.recovery_concurrency);
        let permit = match wait_for_room {
            true => semaphore
                .acquire_owned()
                .await
                .expect("the semaphore is never closed"),
            false => match semaphore.try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    self.inner.store.release(id, fence, None).await?;
                    return Ok(());
                }
            },
        };
        failpoint::hit("mid_recovery", "saga");
        let resume = start(claim, record);
        let engine = self.clone();
        tokio::spawn(async move {
            resume.await;
            drop(permit);
            if engine.inner.backlog.load(Ordering::Relaxed) {
                // Room for one more, and more may be waiting: claim now, not at the next look.
                engine.set_timer(SystemTime::now());
            }
        });
        report.resumed.push(id);
        Ok(())
    }

    /// Renews the leases this engine holds (a saga whose lease is gone stops here at once) and
    /// passes on operators' cancellations of the sagas it runs.
    async fn renew_leases(&self) {
        let asked = std::time::Instant::now();
        // The sagas this engine runs: a lease whose run ended without a last write (an error)
        // is not renewed, and expires, so that another worker takes the saga.
        let ids: Vec<SagaId> = {
            let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
            running.keys().copied().collect()
        };
        let held = self
            .inner
            .store
            .renew(&self.inner.worker.id, &ids, self.inner.worker.lease)
            .await;
        match held {
            Ok(held) => {
                *self.inner.renewed.lock().unwrap_or_else(|e| e.into_inner()) = asked;
                let held: IdMap<bool> = held
                    .into_iter()
                    .map(|h| (h.id, h.cancel_requested))
                    .collect();
                let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
                for (id, run) in running.iter() {
                    match held.get(id) {
                        Some(true) => run.request_cancel(),
                        Some(false) => {}
                        // A saga whose lease was committed after the renewal was asked for may
                        // not be in its answer.
                        None if run.leased_before(asked) => {
                            self.inner.count_lost();
                            run.lose();
                        }
                        None => {}
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "renewing leases failed");
                let last = *self.inner.renewed.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() > self.inner.worker.lease {
                    // Every lease this engine held may have expired and been taken by now.
                    let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
                    for cancel in running.values().filter(|c| c.leased_before(last)) {
                        self.inner.count_lost();
                        cancel.lose();
                    }
                }
            }
        }
    }

    /// Whether this engine takes sagas no live worker holds (it claims, and has types to run).
    pub(crate) fn claims(&self) -> bool {
        self.inner.worker.claims && !self.inner.registry.is_empty()
    }

    /// Acquires sagas of its registered types that no live worker holds and that are due, as
    /// many as there is room for, and resumes them. Returns whether it took as many as there was
    /// room for (more may be due).
    async fn claim(&self) -> bool {
        if !self.claims() {
            return false;
        }
        let room = self.inner.recovery_concurrency.available_permits().min(100);
        if room == 0 {
            self.inner.backlog.store(true, Ordering::Relaxed);
            return false;
        }
        let request = Acquire::new(self.lease_request(), room).types(self.registered_types());
        let acquired = match self.inner.store.acquire(request).await {
            Ok(acquired) => acquired,
            Err(error) => {
                tracing::warn!(%error, "claiming sagas failed");
                return false;
            }
        };
        let full = acquired.len() == room;
        self.inner.backlog.store(full, Ordering::Relaxed);
        let mut report = RecoveryReport::default();
        for record in acquired {
            let result = match record {
                Ok(record) => self.recover_one(&mut report, record, false).await,
                Err(corrupt) => self.park_corrupt(&mut report, corrupt).await,
            };
            if let Err(error) = result {
                tracing::warn!(%error, "resuming a claimed saga failed");
            }
        }
        full
    }

    /// Takes saga `id`, let go while it waits for a participant's reply that this engine holds
    /// now, and resumes it here. Returns whether it did (not when another worker holds it, this
    /// engine cannot run it, or it has no room).
    pub(crate) async fn resume_for_reply(&self, id: SagaId) -> bool {
        if !self.inner.shared || !self.claims() {
            return false;
        }
        let request = Acquire::new(self.lease_request(), 1)
            .types(self.registered_types())
            .only(id);
        let acquired = match self.inner.store.acquire(request).await {
            Ok(acquired) => acquired,
            Err(error) => {
                tracing::warn!(%error, saga.id = %id, "taking a saga for its reply failed");
                return false;
            }
        };
        let mut report = RecoveryReport::default();
        for record in acquired {
            let result = match record {
                Ok(record) => self.recover_one(&mut report, record, false).await,
                Err(corrupt) => self.park_corrupt(&mut report, corrupt).await,
            };
            if let Err(error) = result {
                tracing::warn!(%error, saga.id = %id, "resuming a saga for its reply failed");
            }
        }
        report.resumed.contains(&id)
    }

    fn registered_types(&self) -> Vec<String> {
        self.inner
            .registry
            .keys()
            .map(|t| (*t).to_owned())
            .collect()
    }

    /// Looks up in the store when the next durable timer of this engine's types is due.
    async fn refresh_timer(&self) {
        let generation = self.inner.timers.generation();
        match self
            .inner
            .store
            .next_wake(Some(self.registered_types()))
            .await
        {
            Ok(next) => self.inner.timers.replace(next, generation),
            Err(error) => tracing::warn!(%error, "reading the next timer failed"),
        }
    }

    /// A durable timer of this engine's is due at `at` (a saga it let go until then).
    pub(crate) fn set_timer(&self, at: SystemTime) {
        self.inner.timers.set(at);
    }

    /// Something is due now (an operator's request): the background task claims at once; on a
    /// store no other process shares, one claim runs now.
    pub(crate) fn wake_timers(&self) {
        if self.inner.shared {
            self.inner.timers.set(SystemTime::now());
        } else if self.claims() {
            let engine = self.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { while engine.claim().await {} });
            }
        }
    }
}

/// The earliest durable timer the background task knows of.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// The time, and a count of the times it was set here (so that an answer from the store
    /// read before a timer was set does not replace it).
    next: Mutex<(Option<SystemTime>, u64)>,
    notify: Arc<Notify>,
}

impl Timers {
    /// A timer at `at`: the background task wakes then, or now if it sleeps past it.
    fn set(&self, at: SystemTime) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        next.1 += 1;
        if next.0.is_none_or(|n| at < n) {
            next.0 = Some(at);
            self.notify.notify_one();
        }
    }

    fn generation(&self) -> u64 {
        self.next.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// The store's answer, read after `generation`: it replaces the timer unless one was set
    /// since (then the earlier of the two stays).
    fn replace(&self, at: Option<SystemTime>, generation: u64) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        next.0 = match (next.1 == generation, next.0, at) {
            (true, _, at) => at,
            (false, Some(mine), Some(store)) => Some(mine.min(store)),
            (false, mine, store) => mine.or(store),
        };
    }

    /// Takes the timer if it is due.
    fn take_due(&self, now: SystemTime) -> Option<SystemTime> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        match next.0 {
            Some(at) if at <= now => next.0.take(),
            other => other,
        }
    }
}

/// Renews leases every `interval` and claims sagas no live worker holds, then and whenever a
/// durable timer is due, for as long as the engine lives.
async fn background_loop(engine: Weak<EngineInner>, interval: Duration) {
    let mut renewal = Instant::now() + interval;
    let mut wakes = match engine.upgrade() {
        Some(inner) => inner.store.wakes(),
        None => return,
    };
    loop {
        let (next, notify) = {
            let Some(inner) = engine.upgrade() else {
                return;
            };
            let next = inner.timers.take_due(SystemTime::now());
            (next, Arc::clone(&inner.timers.notify))
        };
        // A due timer is handled at once; otherwise sleep until the renewal or the timer,
        // woken sooner by a sooner timer.
        if next.is_none_or(|at| at > SystemTime::now()) {
            let wake = next.map_or(renewal, |at| renewal.min(instant(at)));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = notify.notified() => {}
                woken = hint(&mut wakes) => {
                    match woken {
                        // An operator's cancel may be among what the hint is about: the renewal
                        // answers whether one reached a saga this engine runs.
                        true => renewal = Instant::now(),
                        // The store gives no more hints: look every interval.
                        false => wakes = None,
                    }
                }
            }
        }
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let engine = Engine { inner };
        if Instant::now() >= renewal {
            engine.renew_leases().await;
            renewal = Instant::now() + interval;
        }
        if engine.claim().await {
            // As many as there was room for: more may be due.
            engine.set_timer(SystemTime::now());
        } else if engine.claims() {
            engine.refresh_timer().await;
        }
    }
}

/// The store's next hint that sagas may be due elsewhere (see [`crate::store::SagaStore::wakes`]):
/// `true` when it comes, `false` when the store stopped giving them, never without any.
async fn hint(wakes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match wakes {
        Some(wakes) => wakes.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// `at` on tokio's clock.
fn instant(at: SystemTime) -> Instant {
    Instant::now() + at.duration_since(SystemTime::now()).unwrap_or_default()
}
