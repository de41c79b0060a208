//! Handing requests to the SQLite writer thread and its answers back, without paying for a
//! sleeping thread's wake-up when the store is quiet.
//!
//! Waking a thread that went to sleep costs tens of microseconds on a virtual machine, about
//! as much as the writer's work on a request, and a saga waiting alone for its commits pays it
//! twice per commit: once for the writer, once for its own worker thread. So both sides keep
//! polling for a short while before they sleep: the writer for the next request, and a caller
//! that is the only one waiting for the store for its answer (yielding to the runtime between
//! polls, so that other tasks still run). Under load neither polls: requests queue up behind
//! the writer anyway, and a caller among many simply awaits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long the writer polls for the next request before it sleeps: a saga sends its next
/// request a few microseconds after the answer to its last one.
const WRITER_POLL: Duration = Duration::from_micros(100);

/// How long a lone caller polls for its answer before it sleeps: about one fsync.
const CALLER_POLL: Duration = Duration::from_millis(1);

/// The requests queued for the writer: a vector its callers push onto and the writer swaps
/// out whole, so that handing a request over allocates nothing (a channel allocates blocks on
/// the callers' threads that the writer then frees, which glibc makes every thread queue for),
/// and the writer takes a whole batch under one lock.
pub(super) struct Queue<R> {
    state: Mutex<Queued<R>>,
    /// Whether `state` holds requests or was closed: polled without the lock.
    ready: AtomicBool,
    /// Wakes the writer once it stopped polling.
    wake: Condvar,
}

struct Queued<R> {
    requests: Vec<R>,
    closed: bool,
    /// The writer waits on `wake`.
    sleeping: bool,
}

impl<R> Queue<R> {
    /// An open queue.
    pub(super) fn new() -> Self {
        Queue {
            state: Mutex::new(Queued {
                requests: Vec::new(),
                closed: false,
                sleeping: false,
            }),
            ready: AtomicBool::new(false),
            wake: Condvar::new(),
        }
    }

    /// A queue no request gets into (a read-only store's).
    pub(super) fn closed() -> Self {
        let queue = Queue::new();
        queue.close();
        queue
    }

    fn lock(&self) -> MutexGuard<'_, Queued<R>> {
        // A panic while it was held left it whole: every change is a push, a swap or a flag.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `request`; gives it back when the queue is closed.
    pub(super) fn push(&self, request: R) -> Result<(), R> {
        let mut state = self.lock();
        if state.closed {
            return Err(request);
        }
        state.requests.push(request);
        self.ready.store(true, Ordering::Release);
        let sleeping = state.sleeping;
        drop(state);
        if sleeping {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Closes the queue: the writer takes what is queued, then its loop ends.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.ready.store(true, Ordering::Release);
        drop(state);
        self.wake.notify_one();
    }

    /// Moves the requests queued (at most `max`) into `batch`, which must be empty, waiting
    /// for one if there is none (polling for a short while first: see the module). `false`
    /// once the queue is closed and empty.
    pub(super) fn take(&self, batch: &mut Vec<R>, max: usize) -> bool {
        debug_assert!(batch.is_empty());
        let start = Instant::now();
        while !self.ready.load(Ordering::Acquire) && start.elapsed() < WRITER_POLL {
            std::hint::spin_loop();
        }
        let mut state = self.lock();
        if !self.ready.load(Ordering::Acquire) {
            state.sleeping = true;
            state = self
                .wake
                .wait_while(state, |s| s.requests.is_empty() && !s.closed)
                .unwrap_or_else(|e| e.into_inner());
            state.sleeping = false;
        }
        if state.requests.len() <= max {
            // The writer's emptied vector goes back to the callers: its room is reused.
            std::mem::swap(&mut state.requests, batch);
        } else {
            batch.extend(state.requests.drain(..max));
        }
        let empty = state.requests.is_empty();
        self.ready.store(!empty || state.closed, Ordering::Release);
        !batch.is_empty() || !state.closed
    }
}

/// Counts the callers waiting for the writer.
#[derive(Debug, Default, Clone)]
pub(super) struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    /// Counts one more caller until the returned guard is dropped; the guard knows whether this
    /// caller was alone.
    pub(super) fn enter(&self) -> Waiter {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        Waiter {
            count: Arc::clone(&self.0),
            alone: before == 0,
        }
    }
}

/// One caller waiting for its answer.
pub(super) struct Waiter {
    count: Arc<AtomicUsize>,
    alone: bool,
}

impl Waiter {
    /// The answer on `reply` (`None` if its sender went away): polled (yielding between
    /// polls) for a while when this caller is alone, awaited otherwise.
    pub(super) async fn answer<T>(self, mut reply: oneshot::Receiver<T>) -> Option<T> {
        if self.alone {
            let start = Instant::now();
            while start.elapsed() < CALLER_POLL {
                match reply.try_recv() {
                    Ok(answer) => return Some(answer),
                    Err(oneshot::error::TryRecvError::Closed) => return None,
                    Err(oneshot::error::TryRecvError::Empty) => tokio::task::yield_now().await,
                }
            }
        }
        reply.await.ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_caller_alone_polls_and_every_caller_gets_its_answer() {
        let waiting = Waiting::default();
        let first = waiting.enter();
        let second = waiting.enter();
        assert!(first.alone && !second.alone);
        drop(second);
        drop(first);
        assert!(waiting.enter().alone, "the count went back to zero");

        let (tx, rx) = oneshot::channel();
        let answer = tokio::spawn(waiting.enter().answer(rx));
        tokio::time::sleep(Duration::from_millis(5)).await;
        tx.send(7).unwrap();
        assert_eq!(answer.await.unwrap(), Some(7), "answered after the polling");

        let (tx, rx) = oneshot::channel::<u8>();
        drop(tx);
        assert_eq!(
            waiting.enter().answer(rx).await,
            None,
            "the writer went away"
        );
    }

    #[test]
    fn the_writer_takes_what_is_queued_in_order_and_sees_the_queue_close() {
        let queue = Arc::new(Queue::new());
        let mut batch = Vec::new();
        for n in 1..=5 {
            queue.push(n).unwrap();
        }
        assert!(queue.take(&mut batch, 3));
        assert_eq!(batch, [1, 2, 3], "at most the batch's bound");
        batch.clear();
        assert!(queue.take(&mut batch, 3));
        assert_eq!(batch, [4, 5]);
        batch.clear();
        let late = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                queue.push(6).unwrap();
                std::thread::sleep(Duration::from_millis(5));
                queue.push(7).unwrap();
                queue.close();
            })
        };
        assert!(queue.take(&mut batch, 3));
        assert_eq!(batch, [6], "after it stopped polling");
        batch.clear();
        late.join().unwrap();
        assert_eq!(queue.push(8), Err(8), "closed");
        assert!(
            queue.take(&mut batch, 3),
            "what was queued before it closed"
        );
        assert_eq!(batch, [7]);
        batch.clear();
        assert!(!queue.take(&mut batch, 3));
        assert!(batch.is_empty());
        assert_eq!(Queue::closed().push(1), Err(1));
    }
}
