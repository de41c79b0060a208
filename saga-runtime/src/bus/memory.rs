//! The in-process bus: the stream is a log in memory, each consumer a cursor into it with the
//! deliveries it is waiting to hear about. It keeps the contract of the NATS bus (the same
//! conformance suite runs on both), on tokio's clock, so tests can pause time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::subject::{check_consumer, check_filter, check_subject, matches};
use super::{Answer, Bus, BusError, BusErrorKind, Deliveries, Delivery, Outgoing, Published};

/// The in-process bus: messages live as long as it does (up to a count, oldest dropped first).
/// Cheap to clone; clones share the stream.
///
/// ```
/// use std::time::Duration;
/// use saga_runtime::bus::MemoryBus;
///
/// let bus = MemoryBus::builder()
///     .ack_wait(Duration::from_secs(5))
///     .duplicate_window(Duration::from_secs(60))
///     .max_messages(10_000)
///     .build();
/// # let _ = bus;
/// ```
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

/// Options of a [`MemoryBus`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryBusBuilder {
    ack_wait: Duration,
    duplicate_window: Duration,
    max_messages: usize,
}

impl MemoryBusBuilder {
    /// How long a delivery may go unanswered before it is delivered again. Default 30 s.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How long a message's id is remembered to refuse a duplicate. Default 2 minutes.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// How many messages the stream keeps; past it, the oldest are dropped (with the deliveries
    /// still waiting for them). Default 1,000,000.
    pub fn max_messages(mut self, count: usize) -> Self {
        self.max_messages = count.max(1);
        self
    }

    /// The bus.
    pub fn build(self) -> MemoryBus {
        MemoryBus {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changed: Notify::new(),
                options: self,
            }),
        }
    }
}

struct Inner {
    state: Mutex<State>,
    /// Told of every new message and every refused delivery.
    changed: Notify,
    options: MemoryBusBuilder,
}

#[derive(Default)]
struct State {
    /// The stored messages, oldest first; `log[0]` has sequence `first`.
    log: VecDeque<Arc<Stored>>,
    first: u64,
    /// Ids published within the duplicate window, with when.
    seen: HashMap<String, Instant>,
    seen_order: VecDeque<(Instant, String)>,
    consumers: HashMap<String, Consumer>,
}

struct Stored {
    subject: String,
    id: String,
    payload: Vec<u8>,
}

struct Consumer {
    filter: String,
    /// The next sequence not yet looked at.
    cursor: u64,
    /// Delivered and not acknowledged, by sequence: when each is due again, and how many times
    /// it was delivered.
    waiting: BTreeMap<u64, Waiting>,
}

struct Waiting {
    due: Instant,
    delivered: u32,
}

impl MemoryBus {
    /// A bus with the default options.
    pub fn new() -> Self {
        MemoryBus::builder().build()
    }

    /// A bus with options.
    pub fn builder() -> MemoryBusBuilder {
        MemoryBusBuilder {
            ack_wait: Duration::from_secs(30),
            duplicate_window: Duration::from_secs(120),
            max_messages: 1_000_000,
        }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        MemoryBus::new()
    }
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("MemoryBus")
            .field("messages", &state.log.len())
            .field("consumers", &state.consumers.len())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is whole before the lock is let go: a panic while it was held (none is
        // expected) left it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Forgets the ids published before the duplicate window.
    fn forget_old_ids(&mut self, now: Instant, window: Duration) {
        while let Some((at, _)) = self.seen_order.front() {
            if now.duration_since(*at) < window {
                break;
            }
            let (at, id) = self.seen_order.pop_front().expect("just looked");
            if self.seen.get(&id) == Some(&at) {
                self.seen.remove(&id);
            }
        }
    }

    fn message(&self, sequence: u64) -> Option<&Arc<Stored>> {
        let index = usize::try_from(sequence.checked_sub(self.first)?).ok()?;
        self.log.get(index)
    }

    fn end(&self) -> u64 {
        self.first + self.log.len() as u64
    }

    /// The next delivery for consumer `name`, if one is due now; else when one may be.
    fn next(
        &mut self,
        name: &str,
        now: Instant,
        ack_wait: Duration,
    ) -> Result<(u64, Arc<Stored>, u32), Option<Instant>> {
        let first = self.first;
        let end = self.end();
        let consumer = self.consumers.get_mut(name).expect("created by consume");
        // Deliveries of dropped messages are forgotten.
        consumer.waiting.retain(|&sequence, _| sequence >= first);
        // A delivery due again comes first, oldest first.
        let due = consumer
            .waiting
            .iter()
            .find(|(_, w)| w.due <= now)
            .map(|(&sequence, _)| sequence);
        let sequence = match due {
            Some(sequence) => Some(sequence),
            None => {
                consumer.cursor = consumer.cursor.max(first);
                let filter = consumer.filter.clone();
                let mut found = None;
                while consumer.cursor < end {
                    let sequence = consumer.cursor;
                    consumer.cursor += 1;
                    let index = (sequence - first) as usize;
                    if matches(&filter, &self.log[index].subject) {
                        found = Some(sequence);
                        break;
                    }
                }
                found
            }
        };
        let consumer = self.consumers.get_mut(name).expect("created by consume");
        let Some(sequence) = sequence else {
            return Err(consumer.waiting.values().map(|w| w.due).min());
        };
        let waiting = consumer.waiting.entry(sequence).or_insert(Waiting {
            due: now,
            delivered: 0,
        });
        waiting.due = now + ack_wait;
        waiting.delivered += 1;
        let delivered = waiting.delivered;
        let message = Arc::clone(self.message(sequence).expect("kept while waited for"));
        Ok((sequence, message, delivered))
    }
}

impl Bus for MemoryBus {
    fn publish(&self, message: Outgoing) -> BoxFuture<'_, Result<Published, BusError>> {
        Box::pin(async move {
            check_subject(&message.subject)?;
            let options = &self.inner.options;
            let published = {
                let mut state = self.inner.lock();
                // Read under the lock, so that ids are remembered in the order they came.
                let now = Instant::now();
                state.forget_old_ids(now, options.duplicate_window);
                if state.seen.contains_key(&message.id) {
                    return Ok(Published::Duplicate);
                }
                state.seen.insert(message.id.clone(), now);
                state.seen_order.push_back((now, message.id.clone()));
                state.log.push_back(Arc::new(Stored {
                    subject: message.subject,
                    id: message.id,
                    payload: message.payload,
                }));
                if state.log.len() > options.max_messages {
                    state.log.pop_front();
                    state.first += 1;
                }
                Published::Stored {
                    sequence: state.end(),
                }
            };
            self.inner.changed.notify_waiters();
            Ok(published)
        })
    }

    fn consume<'a>(
        &'a self,
        consumer: &'a str,
        filter: &'a str,
    ) -> BoxFuture<'a, Result<Deliveries, BusError>> {
        Box::pin(async move {
            check_consumer(consumer)?;
            check_filter(filter)?;
            {
                let mut state = self.inner.lock();
                let first = state.first;
                let existing = state
                    .consumers
                    .entry(consumer.to_owned())
                    .or_insert_with(|| Consumer {
                        filter: filter.to_owned(),
                        cursor: first,
                        waiting: BTreeMap::new(),
                    });
                if existing.filter != filter {
                    return Err(BusError::new(
                        BusErrorKind::Invalid,
                        format!(
                            "consumer `{consumer}` exists with filter `{}`, not `{filter}`",
                            existing.filter
                        ),
                    ));
                }
            }
            let subscription = Subscription {
                inner: Arc::clone(&self.inner),
                consumer: consumer.to_owned(),
            };
            let deliveries: Deliveries = Box::pin(futures_util::stream::unfold(
                subscription,
                |subscription| async move {
                    let delivery = subscription.next().await;
                    Some((Ok(delivery), subscription))
                },
            ));
            Ok(deliveries)
        })
    }
}

/// One subscriber of a consumer.
struct Subscription {
    inner: Arc<Inner>,
    consumer: String,
}

impl Subscription {
    /// Waits for the consumer's next delivery.
    async fn next(&self) -> Delivery {
        loop {
            // Registered before looking, so that a message published after the look wakes it.
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let next = self
                .inner
                .lock()
                .next(&self.consumer, now, self.inner.options.ack_wait);
            match next {
                Ok((sequence, message, delivered)) => {
                    let answer = Box::new(Answered {
                        inner: Arc::downgrade(&self.inner),
                        consumer: self.consumer.clone(),
                        sequence,
                        delivered,
                    });
                    return Delivery::new(
                        message.subject.clone(),
                        message.id.clone(),
                        message.payload.clone(),
                        delivered,
                        answer,
                    );
                }
                Err(Some(due)) => {
                    tokio::select! {
                        () = &mut changed => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                Err(None) => changed.await,
            }
        }
    }
}

/// What a delivery's answer changes: its consumer's record of the message. An acknowledgement
/// counts whichever delivery it answers (as NATS's do); a refusal only for the latest delivery
/// (refusing an earlier one does not put back one already handed out again).
struct Answered {
    inner: Weak<Inner>,
    consumer: String,
    sequence: u64,
    delivered: u32,
}

impl Answered {
    fn answer(&self, due: Option<Instant>) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        {
            let mut state = inner.lock();
            let Some(consumer) = state.consumers.get_mut(&self.consumer) else {
                return;
            };
            let current = consumer
                .waiting
                .get(&self.sequence)
                .is_some_and(|w| w.delivered == self.delivered);
            if due.is_some() && !current {
                return;
            }
            match due {
                None => {
                    consumer.waiting.remove(&self.sequence);
                }
                Some(due) => {
                    if let Some(waiting) = consumer.waiting.get_mut(&self.sequence) {
                        waiting.due = due;
                    }
                }
            }
        }
        inner.changed.notify_waiters();
    }
}

impl Answer for Answered {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        self.answer(None);
        Box::pin(std::future::ready(Ok(())))
    }

    fn nak(self: Box<Self>, delay: Duration) -> BoxFuture<'static, Result<(), BusError>> {
        self.answer(Some(Instant::now() + delay));
        Box::pin(std::future::ready(Ok(())))
    }
}
