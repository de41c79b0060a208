//! Operating sagas from another process: process A (`ops_worker`) runs the sagas; this test
//! process, B, knows them by id only and cancels, resumes and retries them through the store,
//! waits for their outcomes, and sees each refused request's typed reason. The effects ledger
//! says which process ran which attempt, and when. Also: a saga killed (SIGKILL) during a 10 s
//! backoff wait resumes after a restart at its recorded wake time, attempt count continued.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use saga_runtime::store::{SagaQuery, SagaStore, SqliteStore};
use saga_runtime::{
    Engine, OperatorRequest, Refusal, RollbackCause, SagaError, SagaEventKind, SagaId, SagaOutcome,
    SagaStatus,
};

#[path = "ops_sagas.rs"]
#[allow(dead_code)]
mod ops_sagas;
use ops_sagas::{
    Attempt, Brittle, BrittleStep, Cancellable, CancellableStep, Flaky, Ledger, OpsCtx, Parkable,
    Shipping, ShippingStep,
};

const WORKER: &str = env!("CARGO_BIN_EXE_ops_worker");

/// A store, a ledger and a directory for the worker's log.
struct Files {
    dir: tempfile::TempDir,
    store: String,
    ledger: String,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let (store, ledger) = (path("sagas.db"), path("ledger.db"));
        Files { dir, store, ledger }
    }

    fn ledger(&self) -> Ledger {
        Ledger::open(&self.ledger)
    }

    /// Process B's engine: it runs nothing and claims nothing.
    fn operator(&self) -> Engine {
        Engine::builder()
            .sqlite(&self.store)
            .unwrap()
            .worker_id("operator")
            .claims(false)
            .build()
    }
}

/// Process A.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    fn spawn(files: &Files, name: &str, parkable: bool) -> Worker {
        let log = std::fs::File::create(files.dir.path().join(format!("{name}.log"))).unwrap();
        let mut args = vec![files.store.as_str(), files.ledger.as_str(), name];
        if parkable {
            args.push("parkable");
        }
        let mut child = Command::new(WORKER)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let worker = Worker {
            child,
            stdin,
            lines,
        };
        worker.expect("READY");
        worker
    }

    fn expect(&self, line: &str) {
        let heard = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the worker did not say {line}"));
        assert_eq!(heard, line);
    }

    /// Starts saga `id` of `saga_type` in the worker; returns once it is recorded.
    fn start(&mut self, saga_type: &str, id: SagaId, sleep_ms: u64) {
        writeln!(self.stdin, "{saga_type} {id} {sleep_ms}").unwrap();
        self.expect(&format!("ACK {id}"));
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to 30 s) until the ledger has an attempt of `key` for saga `id`.
async fn until_started(ledger: &Ledger, id: SagaId, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ledger
        .attempts(&id.to_string())
        .iter()
        .any(|a| a.key == key)
    {
        assert!(Instant::now() < deadline, "{key} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn keys(attempts: &[Attempt]) -> Vec<&str> {
    attempts.iter().map(|a| a.key.as_str()).collect()
}

fn refusal<T: std::fmt::Debug>(result: Result<T, SagaError>) -> (OperatorRequest, Refusal) {
    match result {
        Err(SagaError::Refused {
            request, refusal, ..
        }) => (request, refusal),
        other => panic!("not refused: {other:?}"),
    }
}

async fn wait<T>(what: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), what)
        .await
        .expect("the saga ended within a minute")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_cancels_a_saga_by_id_and_gets_its_outcome() {
    let files = Files::new();
    let mut a = Worker::spawn(&files, "ops-a", false);
    let b = files.operator();
    let ledger = files.ledger();
    let id = SagaId::new();
    a.start("Cancellable", id, 2_000);
    until_started(&ledger, id, "slow").await;
    b.cancel(id).await.expect("accepted while `slow` runs");

    let outcome = wait(Cancellable::on(&b).wait(id)).await.unwrap();
    let SagaOutcome::Compensated { cause, ctx, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(cause, &RollbackCause::Cancelled);
    assert_eq!(
        ctx.entries,
        ["first", "slow", "undo:slow", "undo:first"],
        "the final context, from the other process"
    );
    let attempts = ledger.attempts(&id.to_string());
    assert_eq!(
        keys(&attempts),
        ["first", "slow", "undo:slow", "undo:first"],
        "stopped at the boundary after `slow`; `last` never ran"
    );
    assert!(
        attempts.iter().all(|a2| a2.pid == a.pid()),
        "all in process A"
    );
    // Ended now: a second cancel says so.
    assert_eq!(
        refusal(b.cancel(id).await),
        (
            OperatorRequest::Cancel,
            Refusal::Finished {
                status: "compensated".into()
            }
        )
    );
    let _ = CancellableStep::ALL;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_say_why_and_a_failed_saga_is_retried_past_its_pivot() {
    let files = Files::new();
    let mut a = Worker::spawn(&files, "ops-a", false);
    let b = files.operator();
    let ledger = files.ledger();

    let unknown = SagaId::new();
    assert!(matches!(b.cancel(unknown).await, Err(SagaError::NotFound(id)) if id == unknown));
    assert!(matches!(
        b.resume(unknown).await,
        Err(SagaError::NotFound(_))
    ));

    let id = SagaId::new();
    a.start("Shipping", id, 1_500);
    until_started(&ledger, id, "ship").await;
    assert_eq!(
        refusal(b.cancel(id).await),
        (OperatorRequest::Cancel, Refusal::PastPivot)
    );
    assert_eq!(
        refusal(b.resume(id).await).1,
        Refusal::NotParked {
            status: "running".into()
        }
    );
    assert_eq!(
        refusal(b.retry(id).await).1,
        Refusal::NotRetryable {
            status: "running".into()
        }
    );

    let outcome = wait(Shipping::on(&b).wait(id)).await.unwrap();
    assert!(
        matches!(&outcome, SagaOutcome::Failed { step: ShippingStep::Ship, error, .. } if error.message() == "the carrier is down"),
        "{outcome:?}"
    );
    assert_eq!(
        refusal(b.cancel(id).await).1,
        Refusal::Finished {
            status: "failed".into()
        }
    );

    // The operator fixes the carrier and retries: the failed step runs again, in process A.
    ledger.turn_on("ship-fixed");
    b.retry(id)
        .await
        .expect("a saga failed after its pivot can be retried");
    let outcome = wait(Shipping::on(&b).wait(id)).await.unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(outcome.ctx().entries, ["first", "commit", "ship", "last"]);
    let attempts = ledger.attempts(&id.to_string());
    assert_eq!(keys(&attempts), ["first", "commit", "ship", "ship", "last"]);
    assert!(attempts.iter().all(|x| x.pid == a.pid()));
    let history = b.history(id).await.unwrap();
    assert!(history.iter().any(|e| matches!(
        e.kind,
        SagaEventKind::SagaReopened {
            request: OperatorRequest::Retry
        }
    )));
    assert_eq!(
        refusal(b.retry(id).await).1,
        Refusal::Finished {
            status: "completed".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_retries_a_compensation_failed_saga() {
    let files = Files::new();
    let mut a = Worker::spawn(&files, "ops-a", false);
    let b = files.operator();
    let ledger = files.ledger();
    let id = SagaId::new();
    a.start("Brittle", id, 0);
    let outcome = wait(Brittle::on(&b).wait(id)).await.unwrap();
    let SagaOutcome::CompensationFailed {
        failures,
        uncompensated,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(failures[0].step, BrittleStep::Fragile);
    assert_eq!(uncompensated, &[BrittleStep::Fragile, BrittleStep::First]);
    assert_eq!(
        refusal(b.resume(id).await).1,
        Refusal::NotParked {
            status: "compensation_failed".into()
        }
    );

    ledger.turn_on("undo-fixed");
    b.retry(id).await.expect("retried");
    let outcome = wait(Brittle::on(&b).wait(id)).await.unwrap();
    assert!(
        matches!(
            &outcome,
            SagaOutcome::Compensated {
                cause: RollbackCause::StepFailed {
                    step: BrittleStep::Boom,
                    ..
                },
                ..
            }
        ),
        "the original cause is kept: {outcome:?}"
    );
    let attempts = ledger.attempts(&id.to_string());
    assert_eq!(
        keys(&attempts),
        [
            "first",
            "fragile",
            "boom",
            "undo:fragile",
            "undo:fragile",
            "undo:first"
        ],
        "compensation went on from the step that failed, in order"
    );
    assert!(attempts.iter().all(|x| x.pid == a.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_saga_is_resumed_by_another_process_once_the_cause_is_fixed() {
    let files = Files::new();
    let ledger = files.ledger();
    let id = SagaId::new();
    // Process B starts the saga and stops mid-step (its runtime dropped: to the store, a dead
    // worker), with a short lease.
    let (store, ledger_path) = (files.store.clone(), files.ledger.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let engine = Engine::builder()
                .sqlite(&store)
                .unwrap()
                .worker_id("short-lived")
                .lease(Duration::from_millis(200))
                .build();
            let ctx = OpsCtx {
                entries: Vec::new(),
                sleep_ms: 1_000,
            };
            let ledger = std::sync::Arc::new(Ledger::open(&ledger_path));
            let run = Parkable::on(&engine).request(ctx).deps(ledger).id(id).run();
            tokio::select! {
                _ = run => panic!("meant to be interrupted"),
                () = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        });
    })
    .join()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A worker without the saga's type takes it over and parks it.
    let a1 = Worker::spawn(&files, "ops-a1", false);
    let b = files.operator();
    let status = Parkable::on(&b).status(id).await.unwrap();
    assert!(
        matches!(&status, SagaStatus::Parked { reason } if reason.contains("no saga type `Parkable` is registered")),
        "{status:?}"
    );
    assert!(matches!(
        Parkable::on(&b).wait(id).await,
        Err(SagaError::Parked { .. })
    ));
    assert_eq!(
        refusal(b.cancel(id).await).1,
        Refusal::Parked {
            reason: "no saga type `Parkable` is registered with this engine \
                     (EngineBuilder::register, or register_definition for a built one)"
                .into()
        }
    );
    // The cause is fixed: a worker with the type replaces it; the operator resumes the saga.
    a1.kill();
    let a2 = Worker::spawn(&files, "ops-a2", true);
    b.resume(id).await.expect("a parked saga can be resumed");
    let outcome = wait(Parkable::on(&b).wait(id)).await.unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    let attempts = ledger.attempts(&id.to_string());
    assert_eq!(
        keys(&attempts),
        ["slow", "slow"],
        "interrupted, then run again"
    );
    assert_eq!(attempts[1].pid, a2.pid(), "by the worker that has the type");
    assert_eq!(
        attempts[0].attempt, attempts[1].attempt,
        "the interrupted attempt runs again with its number"
    );
    let history = b.history(id).await.unwrap();
    let kinds: Vec<&SagaEventKind> = history.iter().map(|e| &e.kind).collect();
    assert!(
        kinds.windows(2).any(|w| matches!(
            w,
            [
                SagaEventKind::SagaParked { .. },
                SagaEventKind::SagaReopened {
                    request: OperatorRequest::Resume
                }
            ]
        )),
        "{kinds:?}"
    );
}

/// Milliseconds since the Unix epoch of `time`.
fn ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_killed_during_its_backoff_resumes_at_its_wake_time_with_its_attempt_count() {
    let files = Files::new();
    let mut a1 = Worker::spawn(&files, "ops-a1", false);
    let b = files.operator();
    let ledger = files.ledger();
    let id = SagaId::new();
    a1.start("Flaky", id, 0);
    // The first attempt fails; the retry is due 10 s later.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (scheduled_at, delay) = loop {
        let history = b.history(id).await.unwrap();
        let retry = history.iter().find_map(|e| match &e.kind {
            SagaEventKind::RetryScheduled { delay, .. } => Some((e.at, *delay)),
            _ => None,
        });
        if let Some(retry) = retry {
            break retry;
        }
        assert!(Instant::now() < deadline, "no retry scheduled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(delay, Duration::from_secs(10));
    let wake = ms(scheduled_at + delay);
    // A durable timer: no worker holds the saga while it waits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = SqliteStore::open(&files.store).unwrap();
    let listed = store.list(SagaQuery::new()).await.unwrap();
    assert_eq!(listed[0].owner, None, "released until its wake time");
    a1.kill();
    // Another worker, another name: it fires the timer when it is due.
    let a2 = Worker::spawn(&files, "ops-a2", false);
    let outcome = wait(Flaky::on(&b).wait(id)).await.unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    let flaky: Vec<Attempt> = ledger
        .attempts(&id.to_string())
        .into_iter()
        .filter(|a| a.key == "flaky")
        .collect();
    assert_eq!(flaky.len(), 2, "retries = 2: never more than 3, here 2");
    assert_eq!(
        flaky.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2],
        "the attempt count went on across the kill"
    );
    assert_eq!(flaky[1].pid, a2.pid());
    let late = flaky[1].at_ms - wake;
    assert!(
        (0..2_000).contains(&late),
        "the retry ran {late} ms after its recorded wake time"
    );
    eprintln!("retry fired {late} ms after its recorded wake time, by another process");
}
