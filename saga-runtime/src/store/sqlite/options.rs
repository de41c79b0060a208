//! How a SQLite store is opened: its options, and the connection checked before anything is
//! written.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::codec::store_error;
use super::schema::{self, READABLE_FROM, SCHEMA_VERSION};
use super::{Durability, SqliteStore};
use crate::store::{StoreError, StoreErrorKind};

/// How to open a [`SqliteStore`]: `SqliteStore::options(path).busy_timeout(..).open()`.
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteOptions {
    pub(super) path: PathBuf,
    pub(super) durability: Durability,
    pub(super) busy_timeout: Duration,
    pub(super) read_only: bool,
}

impl SqliteOptions {
    /// How much a commit survives (default [`Durability::Full`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long a write waits while another process holds the database's write lock before
    /// it fails with an error (default 30 s). The store itself never holds the lock between
    /// commits.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Opens the store read-only, for tools: it never migrates, switches the journal mode or
    /// writes anything (every write fails with [`StoreErrorKind::Unavailable`]), and it needs the
    /// file to exist at this library's schema version.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Opens (creating and migrating if needed) the database.
    pub fn open(self) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_options(self)
    }
}

/// Opens a connection, after checking (before anything is written: even switching to WAL
/// rewrites the header) that the file is a saga store this library can use. Errors name the
/// file.
pub(super) fn connect(options: &SqliteOptions) -> Result<Connection, StoreError> {
    let in_file = |error: StoreError| {
        StoreError::new(error.kind(), format!("{}: {error}", options.path.display()))
            .with_source(error)
    };
    let flags = match options.read_only {
        true => OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        false => OpenFlags::default(),
    };
    let conn = Connection::open_with_flags(&options.path, flags)
        .map_err(store_error)
        .map_err(in_file)?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(store_error)
        .map_err(in_file)?;
    let version = schema::inspect(&conn).map_err(in_file)?;
    if options.read_only {
        if !(READABLE_FROM..=SCHEMA_VERSION).contains(&version) {
            return Err(in_file(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "its schema version is {version}, and a read-only store does not migrate it \
                     to version {SCHEMA_VERSION}: open it read-write once"
                ),
            )));
        }
        return Ok(conn);
    }
    if conn
        .is_readonly("main")
        .map_err(store_error)
        .map_err(in_file)?
    {
        return Err(in_file(StoreError::new(
            StoreErrorKind::Unavailable,
            "the file is read-only: open it with `SqliteStore::options(path).read_only(true)` to \
             read it (nothing was written)",
        )));
    }
    use_wal(&conn, options.busy_timeout).map_err(in_file)?;
    conn.pragma_update(None, "synchronous", options.durability.pragma())
        .map_err(store_error)
        .map_err(in_file)?;
    Ok(conn)
}

/// Switches the file to write-ahead logging (a no-op once it is). The switch needs the file to
/// itself, and SQLite answers one that meets another connection's lock with "database is locked"
/// at once, without waiting in its busy handler: processes opening one new file together meet
/// that. So it is tried again here, until the busy timeout.
fn use_wal(conn: &Connection, timeout: Duration) -> Result<(), StoreError> {
    let deadline = Instant::now() + timeout;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DatabaseBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            done => return done.map_err(store_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    /// Worker processes started together on a new file: each open waits for the others instead
    /// of failing on "database is locked" (it did within ten rounds before `use_wal`).
    #[test]
    fn stores_opened_on_one_new_file_at_once_all_open() {
        for round in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.db");
            let barrier = Arc::new(Barrier::new(4));
            let opening: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteStore::open(&path).map(drop)
                    })
                })
                .collect();
            for open in opening {
                if let Err(error) = open.join().unwrap() {
                    panic!("round {round}: {error}");
                }
            }
        }
    }
}
