//! Account transfer: move money from Alice's account to Bob's, then notify both.
//!
//! `credit_destination` is the pivot, the point of no return: once Bob has been credited the
//! transfer stands, and later failures are retried forward instead of undone. Before it, a failure
//! refunds whatever was debited. Every run prints the balances, and the total is always the same:
//! money is never created or lost.
//!
//! ```text
//! cargo run --example account_transfer                          # completes; the notification
//!                                                               # fails twice, then succeeds
//! cargo run --example account_transfer -- --insufficient-funds  # check fails, nothing moved
//! cargo run --example account_transfer -- --credit-fails        # pivot fails, debit refunded
//! cargo run --example account_transfer -- --notify-fails        # fails after the pivot:
//!                                                               # `Failed`, needs attention
//! ```

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use saga_runtime::{saga, saga_step, RollbackCause, SagaOutcome, StepCx, StepError};
use serde::{Deserialize, Serialize};

/// The transfer: what is persisted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Transfer {
    from: String,
    to: String,
    /// In cents.
    amount: i64,
    debited: bool,
    credited: bool,
    notified: bool,
}

/// A fake bank: balances in cents, and the idempotency keys of the operations already applied.
#[derive(Debug, Default)]
pub struct Ledger {
    balances: BTreeMap<String, i64>,
    applied: HashSet<String>,
}

/// The bank's client and the failures to simulate; never persisted.
#[derive(Debug, Default)]
pub struct Bank {
    ledger: Mutex<Ledger>,
    credit_fails: bool,
    notify_fails: bool,
}

impl Bank {
    fn balance(&self, account: &str) -> Option<i64> {
        self.ledger.lock().unwrap().balances.get(account).copied()
    }

    /// Adds `delta` to `account`, once per `key`: a request sent again with the same key (after a
    /// timeout, a retry or a crash) is not applied twice.
    fn apply(&self, key: String, account: &str, delta: i64) -> Result<(), StepError> {
        let mut ledger = self.ledger.lock().unwrap();
        if ledger.applied.contains(&key) {
            return Ok(());
        }
        let balance = ledger
            .balances
            .get_mut(account)
            .ok_or_else(|| StepError::permanent(format!("no account {account}")))?;
        if *balance + delta < 0 {
            return Err(StepError::permanent("insufficient funds"));
        }
        *balance += delta;
        ledger.applied.insert(key);
        Ok(())
    }
}

#[saga_step(nothing_to_undo, timeout = "2s", retries = 2, backoff = "10ms")]
async fn check_balances(t: &mut Transfer, cx: &StepCx<Bank>) -> Result<(), StepError> {
    let bank = cx.deps();
    let available = bank.balance(&t.from).unwrap_or(0);
    if bank.balance(&t.to).is_none() {
        return Err(StepError::permanent(format!("no account {}", t.to)));
    }
    if available < t.amount {
        println!("  check_balances: {} has only {}", t.from, money(available));
        return Err(StepError::permanent("insufficient funds"));
    }
    println!("  check_balances: ok");
    Ok(())
}

#[saga_step(compensate = refund_source, timeout = "2s", retries = 2, backoff = "10ms")]
async fn debit_source(t: &mut Transfer, cx: &StepCx<Bank>) -> Result<(), StepError> {
    // The check above was only a read: the debit itself refuses to overdraw.
    cx.deps().apply(cx.idempotency_key(), &t.from, -t.amount)?;
    t.debited = true;
    println!("  debit_source: {} -{}", t.from, money(t.amount));
    Ok(())
}

async fn refund_source(t: &mut Transfer, cx: &StepCx<Bank>) -> Result<(), StepError> {
    if t.debited {
        cx.deps().apply(cx.idempotency_key(), &t.from, t.amount)?;
        t.debited = false;
        println!(
            "  refund_source: {} +{} (refunded)",
            t.from,
            money(t.amount)
        );
    }
    Ok(())
}

#[saga_step(pivot, timeout = "2s", retries = 2, backoff = "10ms")]
async fn credit_destination(t: &mut Transfer, cx: &StepCx<Bank>) -> Result<(), StepError> {
    if cx.deps().credit_fails {
        println!(
            "  credit_destination: attempt {}: bank unreachable",
            cx.attempt()
        );
        return Err(StepError::transient("destination bank unreachable"));
    }
    cx.deps().apply(cx.idempotency_key(), &t.to, t.amount)?;
    t.credited = true;
    println!("  credit_destination: {} +{}", t.to, money(t.amount));
    Ok(())
}

// After the pivot: nothing here is ever compensated, so give it retries to push it through.
#[saga_step(nothing_to_undo, timeout = "2s", retries = 4, backoff = "10ms")]
async fn notify_parties(t: &mut Transfer, cx: &StepCx<Bank>) -> Result<(), StepError> {
    if cx.deps().notify_fails || cx.attempt() <= 2 {
        println!(
            "  notify_parties: attempt {}: mail server busy",
            cx.attempt()
        );
        return Err(StepError::transient("mail server busy"));
    }
    t.notified = true;
    println!("  notify_parties: attempt {}: sent", cx.attempt());
    Ok(())
}

saga! {
    /// Moves money between two accounts.
    pub TransferSaga(Transfer, Bank) {
        check_balances,
        debit_source,
        credit_destination,
        notify_parties,
    }
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn print_balances(bank: &Bank) -> i64 {
    let ledger = bank.ledger.lock().unwrap();
    for (account, balance) in &ledger.balances {
        println!("  {account}: {}", money(*balance));
    }
    let total = ledger.balances.values().sum();
    println!("  total: {}", money(total));
    total
}

#[tokio::main]
async fn main() -> Result<(), saga_runtime::SagaError> {
    let flag = |name: &str| std::env::args().any(|a| a == name);
    print!("{}", TransferSaga::description());

    // Balances and amounts in cents.
    let alice = if flag("--insufficient-funds") {
        2_000
    } else {
        10_000
    };
    let bank = Arc::new(Bank {
        ledger: Mutex::new(Ledger {
            balances: BTreeMap::from([("alice".into(), alice), ("bob".into(), 5_000)]),
            ..Default::default()
        }),
        credit_fails: flag("--credit-fails"),
        notify_fails: flag("--notify-fails"),
    });
    println!("balances before:");
    let before = print_balances(&bank);

    let transfer = Transfer {
        from: "alice".into(),
        to: "bob".into(),
        amount: 3_000,
        ..Default::default()
    };
    println!(
        "running TransferSaga: alice -> bob, {}",
        money(transfer.amount)
    );
    let outcome = TransferSaga::run_with(transfer, bank.clone()).await?;

    match &outcome {
        SagaOutcome::Completed { .. } => println!("transfer completed"),
        SagaOutcome::Compensated {
            cause: RollbackCause::StepFailed { step, error },
            ..
        } => {
            let undone = match step {
                TransferSagaStep::CheckBalances => "nothing had moved yet",
                _ => "the debit was refunded",
            };
            println!("transfer rolled back: TransferSagaStep::{step:?} failed ({error}); {undone}");
        }
        SagaOutcome::Failed { step, error, .. } => {
            println!(
                "NEEDS ATTENTION: TransferSagaStep::{step:?} failed after the pivot ({error})"
            );
            println!("  the transfer itself is done and, past the pivot, is not undone;");
            println!("  only the notification is missing: an operator must resend it");
        }
        other => println!("NEEDS ATTENTION: {other:?}"),
    }
    println!("status: {}", TransferSaga::status(outcome.id()).await?);

    println!("balances after:");
    let after = print_balances(&bank);
    if after == before {
        println!("money conserved");
    } else {
        println!(
            "money NOT conserved: {} before, {} after",
            money(before),
            money(after)
        );
    }
    Ok(())
}
