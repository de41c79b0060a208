//! What a typed step output costs against writing the same data into the context.
//!
//! Both sagas run the same three steps: `quote` produces a 2-field quote, `book` reads it and
//! produces a 2-field booking, `confirm` reads the booking. `outputs` passes them as typed
//! outputs (`Result<Quote, _>`, `Output<quote>`); `context` writes them into context fields and
//! reads them back from there. Each side runs in memory and on a SQLite file (full
//! durability), one saga after another on a current-thread runtime.
//!
//! `cargo bench -p saga-runtime --bench outputs`

use criterion::{criterion_group, criterion_main, Criterion};
use saga_runtime::{saga, saga_step, Engine, Output, StepError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Quote {
    id: String,
    cents: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Booking {
    id: String,
    quote: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ctx {
    quote: Option<Quote>,
    booking: Option<Booking>,
    confirmed: bool,
}

// Typed outputs.

#[saga_step(nothing_to_undo)]
async fn quote(_ctx: &mut Ctx) -> Result<Quote, StepError> {
    Ok(Quote {
        id: "quote-0001".into(),
        cents: 4200,
    })
}

#[saga_step(nothing_to_undo)]
async fn book(_ctx: &mut Ctx, quote: Output<quote>) -> Result<Booking, StepError> {
    Ok(Booking {
        id: "booking-0001".into(),
        quote: quote.into_inner().id,
    })
}

#[saga_step]
async fn confirm(ctx: &mut Ctx, booking: Output<book>) -> Result<(), StepError> {
    ctx.confirmed = booking.quote == "quote-0001";
    Ok(())
}

saga! { WithOutputs(Ctx, ()) { quote, book, confirm } }

// The same through the context.

#[saga_step(nothing_to_undo)]
async fn quote_in_ctx(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.quote = Some(Quote {
        id: "quote-0001".into(),
        cents: 4200,
    });
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn book_in_ctx(ctx: &mut Ctx) -> Result<(), StepError> {
    let quote = ctx.quote.clone().unwrap_or_default();
    ctx.booking = Some(Booking {
        id: "booking-0001".into(),
        quote: quote.id,
    });
    Ok(())
}

#[saga_step]
async fn confirm_in_ctx(ctx: &mut Ctx) -> Result<(), StepError> {
    ctx.confirmed = ctx
        .booking
        .as_ref()
        .is_some_and(|b| b.quote == "quote-0001");
    Ok(())
}

saga! { WithContext(Ctx, ()) { quote_in_ctx, book_in_ctx, confirm_in_ctx } }

async fn run_outputs(engine: &Engine) {
    let outcome = WithOutputs::on(engine).run(Ctx::default()).await.unwrap();
    assert!(outcome.ctx().confirmed);
}

async fn run_context(engine: &Engine) {
    let outcome = WithContext::on(engine).run(Ctx::default()).await.unwrap();
    assert!(outcome.ctx().confirmed);
}

fn outputs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().unwrap();
    let memory = Engine::in_memory();
    let sqlite = rt.block_on(async {
        Engine::builder()
            .sqlite(dir.path().join("sagas.db"))
            .unwrap()
            .build()
    });
    let mut group = c.benchmark_group("outputs");
    group.bench_function("in_memory_outputs", |b| {
        b.to_async(&rt).iter(|| run_outputs(&memory))
    });
    group.bench_function("in_memory_context", |b| {
        b.to_async(&rt).iter(|| run_context(&memory))
    });
    group.bench_function("sqlite_outputs", |b| {
        b.to_async(&rt).iter(|| run_outputs(&sqlite))
    });
    group.bench_function("sqlite_context", |b| {
        b.to_async(&rt).iter(|| run_context(&sqlite))
    });
    group.finish();
    rt.block_on(async { drop(sqlite) });
}

criterion_group!(benches, outputs);
criterion_main!(benches);
