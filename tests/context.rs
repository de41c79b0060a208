//! The committed-context rule: a step's changes are committed only when it succeeds; a failed or
//! timed-out attempt's changes are discarded, and the next attempt, the fallback and the
//! compensations start from the last committed context.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{saga, saga_step, StepCx, StepError};
use saga_tests::{engine, Plan, Script};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

/// Adds 10, then plays the script: a failure must discard the +10.
#[saga_step(compensate = withdraw, retries = 2, backoff = "0s", timeout = "1s", fallback = deposit_less)]
async fn deposit(ctx: &mut Account, cx: &StepCx<Script>) -> Result<(), StepError> {
    cx.deps().note(ctx.balance);
    ctx.balance += 10;
    cx.deps().call("deposit", cx).await
}

async fn withdraw(ctx: &mut Account, cx: &StepCx<Script>) -> Result<(), StepError> {
    cx.deps().note(ctx.balance);
    ctx.balance -= 10;
    cx.deps().call("undo:deposit", cx).await
}

#[saga_step(compensate = withdraw_less)]
async fn deposit_less(ctx: &mut Account, cx: &StepCx<Script>) -> Result<(), StepError> {
    cx.deps().note(ctx.balance);
    ctx.balance += 1;
    cx.deps().call("deposit_less", cx).await
}

async fn withdraw_less(ctx: &mut Account, cx: &StepCx<Script>) -> Result<(), StepError> {
    cx.deps().note(ctx.balance);
    ctx.balance -= 1;
    cx.deps().call("undo:deposit_less", cx).await
}

#[saga_step(nothing_to_undo)]
async fn audit(ctx: &mut Account, cx: &StepCx<Script>) -> Result<(), StepError> {
    cx.deps().note(ctx.balance);
    ctx.balance += 1000; // a failing audit must not leave this behind
    cx.deps().call("audit", cx).await
}

saga! { Deposit(Account, Script) { deposit, audit } }

#[tokio::test(start_paused = true)]
async fn failed_and_timed_out_attempts_are_discarded() {
    let script = Arc::new(Script::new().plan(
        "deposit",
        [
            Plan::Transient("lost"),
            Plan::Sleep(Duration::from_secs(9)),
            Plan::Ok,
        ],
    ));
    let outcome = Deposit::on(&engine())
        .run_with(Account::default(), script.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        script.notes(),
        ["0", "0", "0", "10"],
        "every attempt starts from the committed balance"
    );
    assert_eq!(outcome.ctx().balance, 1010);
}

#[tokio::test(start_paused = true)]
async fn compensations_start_from_the_last_committed_context() {
    let script = Arc::new(Script::new().plan("audit", [Plan::Permanent("audit failed")]));
    let outcome = Deposit::on(&engine())
        .run_with(Account::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(
        script.notes(),
        ["0", "10", "10"],
        "withdraw saw 10, not the audit's uncommitted 1010"
    );
    assert_eq!(outcome.ctx().balance, 0);
    assert_eq!(script.keys(), ["deposit", "audit", "undo:deposit"]);
}

#[tokio::test(start_paused = true)]
async fn the_fallback_starts_from_the_last_committed_context() {
    let script = Arc::new(
        Script::new()
            .plan("deposit", std::iter::repeat_n(Plan::Transient("down"), 3))
            .plan("audit", [Plan::Permanent("audit failed")]),
    );
    let outcome = Deposit::on(&engine())
        .run_with(Account::default(), script.clone())
        .await
        .unwrap();
    assert_eq!(
        script.keys(),
        [
            "deposit",
            "deposit",
            "deposit",
            "deposit_less",
            "audit",
            "undo:deposit_less"
        ],
        "after the fallback stood in, its compensation is the one used"
    );
    assert_eq!(script.notes(), ["0", "0", "0", "0", "1", "1"]);
    assert_eq!(outcome.ctx().balance, 0);
}
