//! `saga`: look at and act on the sagas of a store, from a shell.
//!
//! ```text
//! saga --db orders.db list --status running
//! saga --db postgres://postgres@127.0.0.1/test --schema sagas show 018f6b1e-...
//! SAGA_DB=orders.db saga cancel 018f6b1e-...
//! ```
//!
//! The store is a SQLite file or a `postgres://` URL (`--db`, or `SAGA_DB`). Commands that only
//! look (`list`, `show`, `stats`, `graph`) open it read-only and change nothing; `cancel`, `resume` and
//! `retry` go through the store's operator requests, so that the worker holding the saga acts on
//! them. Errors are one line on stderr and a non-zero exit.

mod act;
mod db;
mod filter;
mod graph;
mod list;
mod new;
mod show;
mod stats;
mod text;
mod timeline;
mod web;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use filter::parse_id;
use saga_runtime::SagaId;

#[derive(Parser)]
#[command(
    name = "saga",
    version,
    about = "Look at and act on the sagas of a store"
)]
struct Cli {
    /// The store: a SQLite file, or a postgres:// URL.
    #[arg(long, env = "SAGA_DB", global = true, value_name = "PATH|URL")]
    db: Option<String>,
    /// The PostgreSQL schema the store's tables are in.
    #[arg(long, env = "SAGA_SCHEMA", global = true, default_value = "public")]
    schema: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists sagas, oldest first, a page at a time.
    List(list::Args),
    /// Shows one saga: status, context, lease, and its history as a timeline.
    Show {
        #[arg(value_parser = parse_id)]
        id: SagaId,
        /// The record and history as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Counts sagas per type and status; the oldest running; the next durable timer.
    Stats {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Asks a saga to stop at its next step boundary and compensate.
    Cancel {
        #[arg(value_parser = parse_id)]
        id: SagaId,
    },
    /// Resumes a parked saga from where it stopped (once its cause is fixed).
    Resume {
        #[arg(value_parser = parse_id)]
        id: SagaId,
    },
    /// Retries a compensation-failed saga's compensation, or the failed step of a saga that
    /// failed after its pivot.
    Retry {
        #[arg(value_parser = parse_id)]
        id: SagaId,
    },
    /// Draws a saga type, or one saga's path through it, as a Mermaid flowchart.
    Graph(graph::Args),
    /// Writes a module with a new saga's step stubs, its `saga!` declaration and a test.
    New(new::Args),
    /// Serves the dashboard: what is running, what went wrong, what is still ahead.
    Web(web::Args),
}

async fn run(cli: Cli) -> Result<(), String> {
    let db = cli.db.as_deref();
    match cli.command {
        Command::New(args) => new::run(args),
        Command::List(args) => list::run(&db::open(db, &cli.schema).await?, args).await,
        Command::Show { id, json } => show::run(&db::open(db, &cli.schema).await?, id, json).await,
        Command::Graph(args) => graph::run(&db::open(db, &cli.schema).await?, args).await,
        Command::Stats { json } => stats::run(&db::open(db, &cli.schema).await?, json).await,
        Command::Cancel { id } => {
            act::cancel(db::open_for_writes(db, &cli.schema).await?, id).await
        }
        Command::Resume { id } => {
            act::resume(db::open_for_writes(db, &cli.schema).await?, id).await
        }
        Command::Retry { id } => act::retry(db::open_for_writes(db, &cli.schema).await?, id).await,
        Command::Web(args) => web::run(db, &cli.schema, args).await,
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version are printed as clap prints them.
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            // One line, like every other error of the tool.
            let text = error.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("saga: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("saga: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("saga: {message}");
            ExitCode::FAILURE
        }
    }
}
