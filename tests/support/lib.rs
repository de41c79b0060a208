//! Helpers shared by the behaviour tests: a scripted dependency that records which actions and
//! compensations ran, in order, and answers each call from a per-key plan.

pub mod cart;
pub mod checkout;
pub mod payments;
pub mod process;
pub mod shop;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use saga_runtime::{Backoff, Engine, Jitter, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// A context that remembers which steps committed: each step pushes its name before it calls
/// the script, so a failed attempt's push must be discarded by the runtime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trail {
    /// Names pushed by committed actions and compensations.
    pub entries: Vec<String>,
}

impl Trail {
    /// Appends an entry.
    pub fn push(&mut self, entry: impl Into<String>) {
        self.entries.push(entry.into());
    }
}

/// What one call of a scripted key does.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Succeed.
    Ok,
    /// Fail with a transient error.
    Transient(&'static str),
    /// Fail with a permanent error.
    Permanent(&'static str),
    /// Sleep (on tokio's clock), then succeed.
    Sleep(Duration),
    /// Sleep (on tokio's clock), then fail with a transient error.
    SlowTransient(Duration, &'static str),
    /// Panic with this message.
    Panic(&'static str),
}

/// The scripted dependency.
#[derive(Debug, Default)]
pub struct Script {
    calls: Mutex<Vec<Call>>,
    notes: Mutex<Vec<String>>,
    plans: Mutex<HashMap<String, VecDeque<Plan>>>,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The key: a step name, or `undo:<step>` for a compensation.
    pub key: String,
    /// The attempt number the step handle gave.
    pub attempt: u32,
    /// The step handle's idempotency key.
    pub idempotency_key: String,
    /// tokio's clock when the call started.
    pub at: tokio::time::Instant,
}

impl Script {
    /// A script where every call succeeds unless planned otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Plans the next calls of `key`, in order; once used up, calls succeed.
    pub fn plan(self, key: &str, plans: impl IntoIterator<Item = Plan>) -> Self {
        self.plans
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .extend(plans);
        self
    }

    /// Records the call and plays its plan.
    pub async fn call<D>(&self, key: &str, cx: &StepCx<D>) -> Result<(), StepError> {
        self.calls.lock().unwrap().push(Call {
            key: key.to_owned(),
            attempt: cx.attempt(),
            idempotency_key: cx.idempotency_key(),
            at: tokio::time::Instant::now(),
        });
        let plan = self
            .plans
            .lock()
            .unwrap()
            .get_mut(key)
            .and_then(|p| p.pop_front());
        match plan.unwrap_or(Plan::Ok) {
            Plan::Ok => Ok(()),
            Plan::Transient(m) => Err(StepError::transient(m)),
            Plan::Permanent(m) => Err(StepError::permanent(m)),
            Plan::Sleep(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Plan::SlowTransient(d, m) => {
                tokio::time::sleep(d).await;
                Err(StepError::transient(m))
            }
            Plan::Panic(m) => panic!("{m}"),
        }
    }

    /// Notes something outside the saga context, where the runtime cannot discard it.
    pub fn note(&self, note: impl ToString) {
        self.notes.lock().unwrap().push(note.to_string());
    }

    /// Every note, in order.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }

    /// Every recorded call.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The keys of every recorded call, in order.
    pub fn keys(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.key.clone())
            .collect()
    }

    /// The recorded calls of one key.
    pub fn calls_of(&self, key: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.key == key)
            .cloned()
            .collect()
    }
}

/// An in-memory engine without jitter, so that backoff delays are exact.
pub fn engine() -> Engine {
    Engine::builder()
        .backoff(Backoff {
            cap: Duration::from_secs(30),
            jitter: Jitter::None,
        })
        .build()
}

/// Defines an `async fn` step (with any attributes, e.g. `#[saga_step(...)]`) that pushes its
/// name onto the [`Trail`] and then plays the [`Script`] under its name.
///
/// `scripted!(#[saga_step(compensate = undo_a)] a);` and, for its compensation,
/// `scripted!(undo_a as "undo:a");`.
#[macro_export]
macro_rules! scripted {
    ($(#[$attr:meta])* $name:ident) => {
        $crate::scripted!($(#[$attr])* $name as stringify!($name));
    };
    ($(#[$attr:meta])* $name:ident as $key:expr) => {
        $(#[$attr])*
        async fn $name(
            ctx: &mut $crate::Trail,
            cx: &saga_runtime::StepCx<$crate::Script>,
        ) -> Result<(), saga_runtime::StepError> {
            ctx.push($key);
            cx.deps().call($key, cx).await
        }
    };
}

/// The PostgreSQL server the tests use, `SAGA_POSTGRES_URL` (`.ci/run` sets it); without it,
/// `None` after saying that `what` was skipped, straight to the process's stderr (which the test
/// harness does not capture, so the skip is seen even though the test passes).
pub fn postgres_url(what: &str) -> Option<String> {
    service_url(
        "SAGA_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
        what,
    )
}

/// The NATS server's URL for the tests that need one (`SAGA_NATS_URL`, which `.ci/run` sets);
/// without it, says on stderr that `what` is skipped.
pub fn nats_url(what: &str) -> Option<String> {
    service_url("SAGA_NATS_URL", "nats://127.0.0.1:4222, JetStream on", what)
}

/// The URL in environment variable `var`; without it, says on stderr that `what` is skipped.
fn service_url(var: &str, example: &str, what: &str) -> Option<String> {
    let url = std::env::var(var).ok();
    if url.is_none() {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {what} needs {var} (e.g. {example})"
        );
    }
    url
}

/// A fresh schema name starting with `prefix`, for one test's tables.
pub fn fresh_schema(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Runs `statements` on the database at `url`.
pub async fn postgres_sql(url: &str, statements: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL at SAGA_POSTGRES_URL");
    tokio::spawn(connection);
    client.batch_execute(statements).await.unwrap();
}

/// Restarts the machine's PostgreSQL cluster in immediate mode.
pub fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a PostgreSQL cluster on this machine")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a cluster version");
    let status = std::process::Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "restart",
            "-m",
            "immediate",
        ])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "restarting PostgreSQL: {status}");
}
