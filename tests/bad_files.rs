//! Files that are not saga stores, or not ones this library can use, are refused at open with an
//! error naming the file, and are left exactly as they were: another program's database, a
//! `sagas` table that is not ours, a file that is not a database, a read-only file, a schema
//! version this library never wrote (negative, or an older number over newer tables). A store
//! opened read-only reads and never writes.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use saga_runtime::store::{SagaQuery, SagaStore, SqliteStore, StoreErrorKind, SCHEMA_VERSION};
use saga_runtime::{saga, saga_step, Engine, SagaId, StepError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ctx {
    n: u32,
}

#[saga_step]
async fn only(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.n += 1;
    Ok(())
}

saga! { One(Ctx) { only } }

/// A file made by `setup`, with what it holds.
fn file(setup: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.db");
    setup(&path);
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

fn sql(path: &Path, statements: &str) {
    Connection::open(path)
        .unwrap()
        .execute_batch(statements)
        .unwrap();
}

/// Opening fails with a message naming the file and saying `what`; the file is unchanged and
/// nothing was created beside it.
fn refused(path: &Path, bytes: &[u8], what: &str) {
    let error = SqliteStore::open(path).expect_err("refused");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}: ", path.display())),
        "names the file: {message}"
    );
    assert!(message.contains(what), "{message}");
    assert_eq!(std::fs::read(path).unwrap(), bytes, "the file is unchanged");
    let beside: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside.len(), 1, "nothing was created beside it: {beside:?}");
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let (_dir, path, bytes) = file(|p| {
        sql(
            p,
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO customers (name) VALUES ('Ada');",
        )
    });
    refused(
        &path,
        &bytes,
        "it is not a saga store: it holds other tables (customers) and no saga schema \
         (nothing was written)",
    );
}

#[test]
fn a_sagas_table_that_is_not_ours_is_refused_untouched() {
    let (_dir, path, bytes) = file(|p| sql(p, "CREATE TABLE sagas (id INTEGER, name TEXT);"));
    refused(
        &path,
        &bytes,
        "it holds other tables (sagas) and no saga schema",
    );
    // Even when it claims to be our schema version.
    let (_dir, path, bytes) = file(|p| {
        sql(
            p,
            &format!(
                "CREATE TABLE sagas (id INTEGER, name TEXT);
                 CREATE TABLE saga_history (key INTEGER, saga INTEGER, n INTEGER, event TEXT);
                 PRAGMA user_version = {SCHEMA_VERSION};"
            ),
        )
    });
    refused(
        &path,
        &bytes,
        &format!("its schema version is {SCHEMA_VERSION}, but its table `sagas` lacks seq, saga_type, steps"),
    );
}

#[test]
fn a_store_with_another_programs_table_beside_ours_is_refused_untouched() {
    let (_dir, path, bytes) = file(|p| {
        drop(SqliteStore::open(p).unwrap());
        sql(
            p,
            "PRAGMA journal_mode = DELETE; CREATE TABLE notes (x TEXT);",
        );
    });
    refused(&path, &bytes, "it holds other tables (notes)");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let (_dir, path, bytes) = file(|p| std::fs::write(p, b"just some text, not SQLite\n").unwrap());
    refused(&path, &bytes, "file is not a database");
}

#[test]
fn a_schema_version_this_library_never_wrote_is_refused_untouched() {
    let (_dir, path, bytes) = file(|p| sql(p, "PRAGMA user_version = -1;"));
    refused(
        &path,
        &bytes,
        "the database has schema version -1, which this library never wrote (nothing was written)",
    );
    // Version 1 over the current tables.
    let (_dir, path, bytes) = file(|p| {
        drop(SqliteStore::open(p).unwrap());
        sql(p, "PRAGMA journal_mode = DELETE; PRAGMA user_version = 1;");
    });
    refused(
        &path,
        &bytes,
        "it is not a saga store: it holds other tables (saga_types)",
    );
}

#[test]
fn a_read_only_file_is_refused_at_open_untouched() {
    let (dir, path, bytes) = file(|p| {
        drop(SqliteStore::open(p).unwrap());
        sql(p, "PRAGMA journal_mode = DELETE;");
    });
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root may write to any file: the store is opened by an unprivileged user then.
    let mut open = std::process::Command::new(env!("CARGO_BIN_EXE_open_store"));
    open.arg(&path);
    if is_root() {
        open.uid(65534).gid(65534);
    }
    let output = open.output().unwrap();
    let message = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "refused: {message}");
    assert_eq!(
        message.trim(),
        format!(
            "{}: the file is read-only: open it with `SqliteStore::options(path).read_only(true)` \
             to read it (nothing was written)",
            path.display()
        )
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is unchanged"
    );
}

fn is_root() -> bool {
    let output = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

#[tokio::test]
async fn a_store_opened_read_only_reads_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let id: SagaId = {
        let engine = Engine::builder().sqlite(&path).unwrap().build();
        One::on(&engine).run(Ctx::default()).await.unwrap().id()
    };
    let bytes = std::fs::read(&path).unwrap();
    let store = SqliteStore::options(&path).read_only(true).open().unwrap();
    let record = store.load(id).await.unwrap().expect("readable");
    assert_eq!(record.state.status.name(), "completed");
    assert_eq!(store.list(SagaQuery::new()).await.unwrap().len(), 1);
    assert_eq!(store.history(id, 0, 100).await.unwrap().unwrap().len(), 4);
    let fence = record.fence().unwrap_or_default();
    let error = store.release(id, fence, None).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Unavailable);
    assert_eq!(error.to_string(), "the store is open read-only");
    drop(store);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is unchanged"
    );

    // It does not migrate either.
    let (_dir, old, old_bytes) = file(|p| sql(p, include_str!("fixtures/schema_v1.sql")));
    let error = SqliteStore::options(&old)
        .read_only(true)
        .open()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("its schema version is 1, and a read-only store does not migrate it"),
        "{error}"
    );
    assert_eq!(std::fs::read(&old).unwrap(), old_bytes);
}
