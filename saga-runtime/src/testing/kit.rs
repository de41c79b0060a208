//! Faults injected into steps, the log of every attempt, and the crash point of one exploration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Phase, SagaId, StepError};

/// What an injected fault makes an attempt do, instead of running the step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Fail with a transient error (retried under the step's `retries`).
    Transient(String),
    /// Fail for good.
    Permanent(String),
    /// Fail as an attempt that ran past its timeout does (at once: nothing waits).
    Timeout,
    /// Panic inside the attempt (caught, as any step's panic is).
    Panic(String),
}

impl Fault {
    /// [`Fault::Transient`].
    pub fn transient(message: impl Into<String>) -> Self {
        Fault::Transient(message.into())
    }

    /// [`Fault::Permanent`].
    pub fn permanent(message: impl Into<String>) -> Self {
        Fault::Permanent(message.into())
    }

    /// [`Fault::Panic`].
    pub fn panic(message: impl Into<String>) -> Self {
        Fault::Panic(message.into())
    }
}

/// One attempt of a step or a compensation, as the kit saw it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Call {
    /// The saga.
    pub saga: SagaId,
    /// The step (or fallback) whose action or compensation this was.
    pub step: String,
    /// Action or compensation.
    pub phase: Phase,
    /// Its attempt number (from 1).
    pub attempt: u32,
    /// The idempotency key the step was handed ([`crate::StepCx::idempotency_key`]).
    pub key: String,
    /// What it returned (an injected fault's error, when it was one).
    pub result: Result<(), StepError>,
    /// Whether a fault stood in for the step (the step did not run).
    pub injected: bool,
}

/// Faults to inject and the log of what ran, for the engines built with it
/// ([`crate::EngineBuilder::test_kit`]). Cheap to clone: clones share the faults and the log.
#[derive(Debug, Clone, Default)]
pub struct TestKit {
    pub(crate) inner: Arc<KitInner>,
}

/// A fault for the attempts of one step's action or compensation.
#[derive(Debug)]
struct Rule {
    step: String,
    phase: Phase,
    /// `None`: every attempt.
    attempt: Option<u32>,
    fault: Fault,
}

#[derive(Debug, Default)]
pub(crate) struct KitInner {
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<Vec<Call>>,
    /// Every durability boundary passed, in order: (point, step).
    boundaries: Mutex<Vec<(&'static str, String)>>,
    /// The boundary (its position in that order) at which the process "crashes".
    crash_at: Option<usize>,
    /// Set at the crash: the engine's store refuses everything from then on.
    pub(crate) dead: Arc<AtomicBool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while one was held left it whole: every change is one push.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestKit {
    /// A kit with no faults and an empty log.
    pub fn new() -> Self {
        TestKit::default()
    }

    /// A kit that crashes its engine at the `boundary`-th durability boundary (from 0).
    pub(crate) fn crashing_at(boundary: Option<usize>) -> Self {
        TestKit {
            inner: Arc::new(KitInner {
                crash_at: boundary,
                ..KitInner::default()
            }),
        }
    }

    /// Makes attempt `attempt` (from 1; `0` for every attempt) of step `step`'s action fail with
    /// `fault` instead of running. `step` is the step's name (or the generated step enum's
    /// variant, which displays as it), or a fallback's.
    pub fn fail(&self, step: impl std::fmt::Display, attempt: u32, fault: Fault) -> &Self {
        self.rule(step, Phase::Action, attempt, fault)
    }

    /// Makes attempt `attempt` (from 1; `0` for every attempt) of step `step`'s compensation
    /// fail with `fault` instead of running.
    pub fn fail_compensation(
        &self,
        step: impl std::fmt::Display,
        attempt: u32,
        fault: Fault,
    ) -> &Self {
        self.rule(step, Phase::Compensation, attempt, fault)
    }

    fn rule(
        &self,
        step: impl std::fmt::Display,
        phase: Phase,
        attempt: u32,
        fault: Fault,
    ) -> &Self {
        lock(&self.inner.rules).push(Rule {
            step: step.to_string(),
            phase,
            attempt: (attempt > 0).then_some(attempt),
            fault,
        });
        self
    }

    /// Every attempt so far, in the order they ended.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.inner.calls).clone()
    }

    /// The attempts that succeeded, in order: a step's name for its action, `undo:{step}` for its
    /// compensation.
    pub fn succeeded(&self) -> Vec<String> {
        lock(&self.inner.calls)
            .iter()
            .filter(|c| c.result.is_ok())
            .map(|c| match c.phase {
                Phase::Action => c.step.clone(),
                Phase::Compensation => format!("undo:{}", c.step),
            })
            .collect()
    }

    /// Forgets the log (not the faults).
    pub fn clear(&self) {
        lock(&self.inner.calls).clear();
    }

    /// The durability boundaries passed so far, as `point@step`.
    pub(crate) fn boundaries(&self) -> Vec<(&'static str, String)> {
        lock(&self.inner.boundaries).clone()
    }
}

impl KitInner {
    /// The fault that stands in for this attempt, if one does.
    pub(crate) fn fault(&self, step: &str, phase: Phase, attempt: u32) -> Option<Fault> {
        lock(&self.rules)
            .iter()
            .find(|r| r.step == step && r.phase == phase && r.attempt.is_none_or(|a| a == attempt))
            .map(|r| r.fault.clone())
    }

    pub(crate) fn called(&self, call: Call) {
        lock(&self.calls).push(call);
    }

    /// Notes a boundary passed; `true` when the engine crashes here.
    pub(crate) fn boundary(&self, point: &'static str, step: &str) -> bool {
        let mut passed = lock(&self.boundaries);
        passed.push((point, step.to_owned()));
        let crash = self.crash_at == Some(passed.len() - 1);
        if crash {
            self.dead.store(true, Ordering::SeqCst);
        }
        crash
    }
}
