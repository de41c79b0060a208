//! A spare buffer of writes per thread, which a run takes when it records a transition and gives
//! back once the store took its writes.
//!
//! A run records a transition or two, flushes them, then waits for its step: a buffer of its own
//! would sit empty through every wait, some 900 bytes for each saga in flight (a write is a few
//! hundred bytes, and a buffer grows to four). Taken from the thread and given back around each
//! flush, the buffer is allocated once per thread instead.

use std::cell::Cell;

use crate::store::Write;

thread_local! {
    static SPARE: Cell<Vec<Write>> = const { Cell::new(Vec::new()) };
}

/// This thread's spare buffer (empty, with room), or a new one when another run has it.
pub(super) fn take() -> Vec<Write> {
    SPARE.with(Cell::take)
}

/// Gives `buffer` back to this thread, when the store took every write from it.
pub(super) fn give_back(buffer: Vec<Write>) {
    if buffer.is_empty() && buffer.capacity() != 0 {
        SPARE.with(|spare| drop(spare.replace(buffer)));
    }
}
