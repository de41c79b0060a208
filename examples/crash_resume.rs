//! Durability: sagas recorded in SQLite survive the death of their process.
//!
//! Each run resumes what the previous run left unfinished, starts `--start N` new sagas (default
//! 5) whose steps take a second each, and waits for all of them. Kill it mid-run (Ctrl-C,
//! `kill -9`) and run it again with `--start 0`: completed steps are not run again, the
//! interrupted step runs again with the same idempotency key. (A saga resumed five times in a
//! row without completing a step is parked instead: it may be what kills its worker.)
//!
//! ```text
//! cargo run --example crash_resume -- [--db crash_resume.db] [--start 5] [--reset]
//! ```

use std::time::Duration;

use saga_runtime::{saga, saga_step, Engine, SagaEventKind, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// The persisted context: the steps completed so far, restored when the saga resumes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    done: Vec<String>,
}

/// The body of every step: say which step runs under which key, then work for a second.
async fn slow_step(ctx: &mut Report, cx: &StepCx) -> Result<(), StepError> {
    println!(
        "  running {} (key {}), done before: {:?}",
        cx.step(),
        cx.idempotency_key(),
        ctx.done
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    ctx.done.push(cx.step().to_owned());
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn fetch_data(ctx: &mut Report, cx: &StepCx) -> Result<(), StepError> {
    slow_step(ctx, cx).await
}

#[saga_step(nothing_to_undo)]
async fn render_report(ctx: &mut Report, cx: &StepCx) -> Result<(), StepError> {
    slow_step(ctx, cx).await
}

#[saga_step]
async fn email_report(ctx: &mut Report, cx: &StepCx) -> Result<(), StepError> {
    slow_step(ctx, cx).await
}

saga! {
    /// Fetches data, renders a report, emails it: slowly.
    pub ReportSaga(Report, ()) {
        fetch_data,
        render_report,
        email_report,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut db, mut start, mut reset) = ("crash_resume.db".to_owned(), 5_usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => db = args.next().ok_or("--db needs a path")?,
            "--start" => start = args.next().ok_or("--start needs a number")?.parse()?,
            "--reset" => reset = true,
            _ => return Err(format!("unknown argument {arg:?}").into()),
        }
    }
    if reset {
        // The write-ahead log goes too: it may hold the last commits of a killed run.
        for file in [db.clone(), format!("{db}-wal"), format!("{db}-shm")] {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }

    // One worker name across runs: a restarted run takes back at once what the killed one held,
    // instead of waiting for its leases (10 s) to expire.
    let engine = Engine::builder()
        .sqlite(&db)?
        .worker_id("crash_resume")
        .register::<ReportSaga>(())
        .build();
    let sagas = ReportSaga::on(&engine);

    println!("opened {db}");
    // Resumed sagas go on in the background: their first steps may print before this returns.
    let report = engine.recover().await?;
    println!(
        "recover(): {} resumed, {} parked",
        report.resumed.len(),
        report.parked.len()
    );
    for id in &report.resumed {
        println!("resumed saga {id}");
    }
    for (id, reason) in &report.parked {
        println!("parked saga {id}: {reason}");
    }

    let mut ids = report.resumed.clone();
    ids.extend(report.parked.iter().map(|(id, _)| *id));
    for _ in 0..start {
        let id = sagas.start(Report::default()).await?;
        println!("started saga {id}");
        ids.push(id);
        // Staggered, so that a kill catches the sagas at different steps.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    let mut table = Vec::new();
    for id in ids {
        // Its outcome, once it has ended (here or in an earlier run of this program).
        let _outcome = sagas.wait(id).await?;
        table.push((id, sagas.status(id).await?));
    }
    // The history is in the file too: it shows which steps ran in which process.
    println!(
        "\n{:<36}  {:<9}  steps started, across runs",
        "saga", "status"
    );
    for (id, status) in table {
        let mut timeline = Vec::new();
        for event in sagas.history(id).await? {
            match event.kind {
                SagaEventKind::StepStarted { step, .. } => timeline.push(step.into_owned()),
                SagaEventKind::SagaResumed { recovery_attempt } => {
                    timeline.push(format!("<resumed, recovery attempt {recovery_attempt}>"))
                }
                _ => {}
            }
        }
        println!("{id}  {:<9}  {}", status.name(), timeline.join(" "));
    }
    Ok(())
}
