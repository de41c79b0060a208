//! [`StoreFuture`]: what a store method returns, ready at once or to be awaited.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::StoreError;

/// The answer of a store method: a future of its result.
///
/// A store that answers at once (the in-memory store answers every call under its lock) returns
/// [`StoreFuture::ready`], which costs no allocation: every transition of every saga waits for
/// one of these. A store that waits for a database wraps its future with [`StoreFuture::new`].
///
/// ```
/// use saga_runtime::store::{StoreError, StoreErrorKind, StoreFuture};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let now: StoreFuture<'_, u64> = StoreFuture::ready(Ok(3));
/// assert_eq!(now.await.unwrap(), 3);
///
/// let later = StoreFuture::new(async { Err::<u64, _>(StoreError::new(StoreErrorKind::Busy, "locked")) });
/// assert_eq!(later.await.unwrap_err().kind(), StoreErrorKind::Busy);
/// # });
/// ```
#[must_use = "a store request does nothing unless awaited"]
pub struct StoreFuture<'a, T> {
    state: State<'a, T>,
}

enum State<'a, T> {
    /// The result, until it is taken.
    Ready(Option<Result<T, StoreError>>),
    Pending(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>),
}

impl<'a, T> StoreFuture<'a, T> {
    /// An answer already known.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        StoreFuture {
            state: State::Ready(Some(result)),
        }
    }

    /// Whether the answer is known already: awaiting it will not wait.
    ///
    /// ```
    /// use saga_runtime::store::StoreFuture;
    ///
    /// assert!(StoreFuture::<'_, u64>::ready(Ok(1)).is_ready());
    /// assert!(!StoreFuture::new(async { Ok::<u64, _>(1) }).is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(Some(_)))
    }

    /// An answer `future` gives.
    pub fn new(future: impl Future<Output = Result<T, StoreError>> + Send + 'a) -> Self {
        StoreFuture {
            state: State::Pending(Box::pin(future)),
        }
    }
}

// The result is moved out, never pinned: the future is `Unpin` whatever `T` is.
impl<T> Unpin for StoreFuture<'_, T> {}

impl<T> Future for StoreFuture<'_, T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Ready(result) => Poll::Ready(
                result
                    .take()
                    .expect("a StoreFuture is not polled after it completed"),
            ),
            State::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready(Some(_)) => "ready",
            State::Ready(None) => "done",
            State::Pending(_) => "pending",
        };
        f.debug_struct("StoreFuture")
            .field("state", &state)
            .finish()
    }
}
