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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long the writer polls for the next request before it sleeps: a saga sends its next
/// request a few microseconds after the answer to its last one.
const WRITER_POLL: Duration = Duration::from_micros(100);

/// How long a lone caller polls for its answer before it sleeps: about one fsync.
const CALLER_POLL: Duration = Duration::from_millis(1);

/// The writer's next request; `None` once every sender is gone.
pub(super) fn next_request<R>(requests: &mpsc::Receiver<R>) -> Option<R> {
    let start = Instant::now();
    while start.elapsed() < WRITER_POLL {
        match requests.try_recv() {
            Ok(request) => return Some(request),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    requests.recv().ok()
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
    fn the_writer_sees_requests_and_the_end_of_the_senders() {
        let (tx, rx) = mpsc::channel();
        tx.send(1).unwrap();
        assert_eq!(next_request(&rx), Some(1));
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            tx.send(2).unwrap();
        });
        assert_eq!(next_request(&rx), Some(2), "after it stopped polling");
        late.join().unwrap();
        assert_eq!(next_request(&rx), None);
    }
}
