//! The members of a parallel group at work at once.
//!
//! # Order
//!
//! The decision hands out one attempt at a time. A member's attempt has its intent recorded
//! and waits in `launching` while the decision is asked again, so that every member starts
//! after one commit of all their intents; then each runs as its own future, and the run waits
//! for the next to end (or for a sibling's retry to be due) and records its result. A member
//! reads the context only: its copy is never committed, so no member's work overwrites
//! another's (see [`Run::conclude`]).

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::attempt::Ended;
use super::Run;
use crate::machine::{Definition, Task};
use crate::step::Phase;
use crate::{SagaError, SagaKind};

type Member<C> = Pin<Box<dyn Future<Output = (Ended<C>, SystemTime)> + Send>>;

/// The attempts of a group's members that this run performs.
pub(crate) struct Group<C> {
    /// Intents recorded, attempts not started yet.
    launching: Vec<Task>,
    /// Attempts running, each with the time it started.
    running: FuturesUnordered<Member<C>>,
    /// Step and phase of every attempt launching or running: what the decision must not hand
    /// out again.
    keys: Vec<(usize, Phase)>,
}

impl<C> Default for Group<C> {
    fn default() -> Self {
        Group {
            launching: Vec::new(),
            running: FuturesUnordered::new(),
            keys: Vec::new(),
        }
    }
}

impl<S: SagaKind> Run<S> {
    /// Whether an attempt of `task` runs at once with others: its step is in a parallel group.
    pub(super) fn concurrent(&self, task: Task) -> bool {
        self.table.stage(task.step).len() > 1
    }

    /// The attempts this run performs right now.
    pub(super) fn at_work(&self) -> &[(usize, Phase)] {
        match &self.group {
            Some(group) => &group.keys,
            None => &[],
        }
    }

    /// Records the intent of a member's attempt; it starts with the others at [`Run::launch`].
    pub(super) fn intend_member(&mut self, task: Task) -> Result<(), SagaError> {
        self.intend(task, self.table.def(task.step, task.fallback).name())?;
        let group = self.group.get_or_insert_with(Default::default);
        group.launching.push(task);
        group.keys.push((task.step, task.phase));
        Ok(())
    }

    /// Whether members' attempts wait to be started.
    pub(super) fn launching(&self) -> bool {
        self.group.as_ref().is_some_and(|g| !g.launching.is_empty())
    }

    /// Makes the recorded intents durable, then starts every attempt waiting for it.
    pub(super) async fn launch(&mut self) -> Result<(), SagaError> {
        let waited = self.flush().await?;
        let started = match waited {
            true => self.tick(),
            false => self.clock,
        };
        let tasks = match &mut self.group {
            Some(group) => std::mem::take(&mut group.launching),
            None => Vec::new(),
        };
        for task in tasks {
            self.intended(task, self.table.def(task.step, task.fallback).name())?;
            let member = self.prepare(task).perform();
            let member: Member<S::Context> = Box::pin(async move { (member.await, started) });
            if let Some(group) = &mut self.group {
                group.running.push(member);
            }
        }
        Ok(())
    }

    /// Waits for the next member's attempt to end and records its result; with `until`, waits
    /// no longer than that (a sibling's retry is due then), cut short by a cancellation or the
    /// deadline when the saga can still stop.
    pub(super) async fn join(&mut self, until: Option<SystemTime>) -> Result<(), SagaError> {
        self.flush().await?;
        let (wake, stoppable) = match until {
            Some(until) => {
                let (wake_at, stoppable) = self.wake_at(until);
                (Some(self.instant(wake_at)), stoppable)
            }
            None => (None, false),
        };
        let cancel = &self.cancel;
        let Some(group) = self.group.as_mut().filter(|g| !g.running.is_empty()) else {
            // The decision waits for an attempt only when this run performs one.
            return Err(SagaError::InvalidState {
                id: self.id,
                operation: "waiting for a step",
                needed: "performing one",
                status: "performing none".into(),
            });
        };
        let timer = async {
            match wake {
                None => std::future::pending().await,
                Some(wake) if stoppable => cancel.sleep_until(wake).await,
                Some(wake) => tokio::time::sleep_until(wake).await,
            }
        };
        let ended = tokio::select! {
            ended = group.running.next() => ended,
            () = timer => None,
            // Another worker holds the saga now: no result could be recorded.
            () = cancel.lost() => return self.cancel.check_lease(self.id),
        };
        let Some((ended, started)) = ended else {
            self.tick();
            return self.cancel.check_lease(self.id);
        };
        let key = (ended.task.step, ended.task.phase);
        group.keys.retain(|k| *k != key);
        self.conclude_member(ended, started)
    }
}
