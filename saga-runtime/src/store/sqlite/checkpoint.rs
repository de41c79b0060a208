//! Checkpoints on a thread of their own: the log's pages are copied into the database file (and,
//! below full durability, both are fsynced) there, not in the commit that crossed the threshold.
//!
//! SQLite checkpoints in the commit that makes the log pass its threshold: that commit, and every
//! saga waiting for it, waits for the copy and its fsyncs. Here the writer's commit only asks this
//! thread to checkpoint, and commits go on meanwhile (a passive checkpoint never blocks the
//! writer). Should this thread fall far behind, the writer checkpoints itself, as SQLite would
//! (see [`install`]): the log never grows without bound, which would slow every page lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;

use super::codec::store_error;
use crate::store::{StoreError, StoreErrorKind};

/// Log pages past which a commit asks for a checkpoint.
pub(super) const CHECKPOINT_PAGES: i32 = 10_000;

/// Log pages past which the writer checkpoints itself: the checkpoint thread fell behind.
const WRITER_CHECKPOINT_PAGES: i32 = 4 * CHECKPOINT_PAGES;

/// Pages the checkpoint thread may leave uncopied for the writer to finish. The log starts over
/// only once every page in it is copied, and a checkpoint that runs beside a writer never ends
/// with nothing left to copy: the writer finishes it, in one of its commits, when little is left.
const WRITER_FINISHES_PAGES: i32 = 1_000;

/// What the writer and the checkpoint thread share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// What the thread's last checkpoint left: the pages in the log (high 32 bits) and how many
    /// of them were copied (low 32 bits).
    last: AtomicU64,
}

#[derive(Default)]
struct State {
    requested: bool,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Two flags: a panic while it was held left them whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request(&self) {
        let mut state = self.lock();
        if !state.requested {
            state.requested = true;
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Waits for a request; `false` once closed.
    fn next(&self) -> bool {
        let state = self.lock();
        let mut state = self
            .wake
            .wait_while(state, |s| !s.requested && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        state.requested = false;
        !state.closed
    }
}

/// What a commit that leaves `pages` in the log does about a checkpoint.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Nothing,
    /// Asks the checkpoint thread.
    Ask,
    /// Checkpoints itself: little is left, or the thread fell far behind.
    Finish,
}

/// [`Next`], given what the thread's last checkpoint left (see [`Shared::last`]).
fn after_commit(pages: i32, last: u64) -> Next {
    if pages < CHECKPOINT_PAGES {
        return Next::Nothing;
    }
    let (log, copied) = ((last >> 32) as i32, last as u32 as i32);
    // What the thread left of this log (a log larger than this one was an earlier one).
    let left = match log <= pages {
        true => pages - copied,
        false => pages,
    };
    match left <= WRITER_FINISHES_PAGES || pages >= WRITER_CHECKPOINT_PAGES {
        true => Next::Finish,
        false => Next::Ask,
    }
}

/// What a checkpoint left, as [`Shared::last`] keeps it.
fn packed(log: i32, copied: i32) -> u64 {
    (u64::from(log as u32) << 32) | u64::from(copied as u32)
}

/// The checkpoint thread of a store; stopped (after its checkpoint under way) when dropped.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the checkpoint thread on its own connection `conn`, and has `writer`'s commits ask it
/// to checkpoint (replacing SQLite's automatic checkpoints on that connection).
pub(super) fn install(
    writer: &mut Connection,
    conn: Connection,
) -> Result<Checkpointer, StoreError> {
    let shared = Arc::new(Shared::default());
    let thread = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("saga-sqlite-checkpoint".into())
            .spawn(move || {
                while shared.next() {
                    // A checkpoint that fails (an I/O error, say) leaves the log as it was: the
                    // next request, or the writer's own, tries again.
                    if let Ok((log, copied)) =
                        conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE)
                    {
                        shared.last.store(packed(log, copied), Ordering::Release);
                    }
                }
            })
            .map_err(|e| StoreError::new(StoreErrorKind::Unavailable, e.to_string()))?
    };
    let asked = Arc::clone(&shared);
    // The log's size at the last commit: smaller now, it started over.
    let mut before = 0;
    writer
        .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
            if pages < before {
                // What the thread copied of the log before is nothing of this one: kept, it
                // would pass, once this log grows past that one's size, for a checkpoint of
                // this one nearly done (and the writer would copy all of it itself).
                asked.last.store(0, Ordering::Release);
            }
            before = pages;
            match after_commit(pages, asked.last.load(Ordering::Acquire)) {
                Next::Nothing => {}
                Next::Ask => asked.request(),
                // Busy while the thread checkpoints: then it goes on, and so does this commit.
                Next::Finish => drop(wal.checkpoint_v2(CheckpointMode::PASSIVE)),
            }
            Ok(())
        }))
        .map_err(store_error)?;
    Ok(Checkpointer {
        shared,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attempt, create};
    use super::super::{Durability, SqliteStore};
    use super::*;
    use crate::store::SagaStore;
    use crate::SagaId;

    #[test]
    fn the_writer_asks_then_finishes_what_little_the_thread_left() {
        let threshold = CHECKPOINT_PAGES;
        assert_eq!(after_commit(threshold - 1, 0), Next::Nothing);
        assert_eq!(after_commit(threshold, 0), Next::Ask, "nothing copied yet");
        let copied = packed(threshold + 500, threshold + 400);
        assert_eq!(
            after_commit(threshold + 600, copied),
            Next::Finish,
            "200 pages left"
        );
        assert_eq!(
            after_commit(threshold + 600 + WRITER_FINISHES_PAGES, copied),
            Next::Ask,
            "more left than the writer finishes"
        );
        let earlier_log = packed(threshold * 2, threshold * 2);
        assert_eq!(
            after_commit(threshold + 1, earlier_log),
            Next::Ask,
            "what it copied of an earlier log counts for nothing"
        );
        assert_eq!(
            after_commit(WRITER_CHECKPOINT_PAGES, packed(threshold, 0)),
            Next::Finish,
            "the thread fell far behind"
        );
        assert_eq!(
            after_commit(threshold + 900, 0),
            Next::Ask,
            "once the log started over, what the thread copied of the last one is forgotten"
        );
    }

    /// Sagas written one after another, with no pause for a checkpoint to catch up: the log
    /// still starts over, and nothing written is lost. Every commit adds at least a page to the
    /// log, so a log that never started over would pass the bound below. Where the log stays
    /// between the threshold and the bound depends on timing: in a release build the thread
    /// keeps it under twice the threshold, but beside other tests on two cores it can fall
    /// behind until the writer checkpoints itself (one CI run reached 27,322 pages against a
    /// bound of twice the threshold that this test checked before). The writer's rule is
    /// tested above.
    #[tokio::test]
    async fn the_log_starts_over_under_a_steady_stream_of_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open_with(&path, Durability::Normal).unwrap();
        let wal = dir.path().join("s.db-wal");
        let frames = || (std::fs::metadata(&wal).unwrap().len().saturating_sub(32)) / (4096 + 24);
        // The most the log holds: the writer checkpoints itself after the commit that passes
        // `WRITER_CHECKPOINT_PAGES`, and a commit here writes a few pages.
        let bound = (WRITER_CHECKPOINT_PAGES + 100) as u64;
        let (mut commits, mut most) = (0, 0);
        while commits < bound + bound / 4 {
            let id = SagaId::new();
            let mut fence = create(&store, id).await;
            for n in 1..=3 {
                fence.version = store
                    .write(id, fence, &mut vec![attempt(id, n)])
                    .await
                    .unwrap();
            }
            commits += 4;
            most = most.max(frames());
        }
        assert!(
            most <= bound,
            "the log reached {most} pages after {commits} commits"
        );
        drop(store);
        let sagas: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM sagas WHERE events = 4", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(sagas as u64, commits / 4);
    }
}
