//! A saga's steps as a stream of results, in the order they complete: each step's typed output
//! as soon as it is recorded, as python-cqrs's `async for step_result in transaction`.
//!
//! The stream reads the saga's history, which the store keeps complete and in order, so it sees
//! every step wherever the saga runs (here, or in another process sharing the store) and however
//! late it starts: it never misses a step that completed before it was asked for. A run on this
//! engine wakes it at each of the saga's writes (and no other saga's); a saga another process
//! runs is looked up every 50 ms at first, then less often, up to once a second.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{BoxStream, Stream, StreamExt};

use crate::engine::Engine;
use crate::event::SagaEventKind;
use crate::executor::waiting::{FIRST_POLL, MAX_POLL};
use crate::executor::Table;
use crate::output::{NamedStep, OutputError};
use crate::{SagaError, SagaId, SagaKind, StepEnum};

/// One step that completed: which, on which attempt, in how long, and what it returned.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StepResult<St> {
    /// The step (when its fallback stood in for it, still the step).
    pub step: St,
    /// The attempt that succeeded, from 1.
    pub attempt: u32,
    /// How long that attempt took.
    pub duration: Duration,
    /// Its output as recorded, `None` for `()`.
    output: Option<crate::OutputValue>,
}

impl<St: StepEnum> StepResult<St> {
    /// The output as JSON, `None` for a step returning `()`.
    pub fn json(&self) -> Option<&serde_json::Value> {
        self.output.as_ref().map(crate::OutputValue::json)
    }

    /// The output, read as step `S`'s: `None` when this result is another step's (or `S`
    /// returns `()`). A result of an instance of `S` (`reserve[2]`, in a built definition) is
    /// `S`'s too.
    pub fn output<S: NamedStep>(&self) -> Result<Option<S::Output>, OutputError>
    where
        S::Output: crate::StepValue,
    {
        if !crate::output::names_step(self.step.name(), S::NAME) {
            return Ok(None);
        }
        match &self.output {
            None => Ok(None),
            Some(value) => value.read().map(Some).map_err(|e| OutputError {
                step: S::NAME,
                message: e.to_string(),
            }),
        }
    }
}

/// The results of a saga's steps, in completion order; the stream ends once the saga has ended
/// (or was parked). Its outcome is then [`SagaClient::wait`](crate::SagaClient::wait)'s.
///
/// ```
/// # use saga_runtime::{saga, saga_step, Engine, StepError};
/// # use futures_util::StreamExt;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// # struct Ctx;
/// #[saga_step(nothing_to_undo)]
/// async fn quote(ctx: &mut Ctx) -> Result<u64, StepError> { Ok(4200) }
/// #[saga_step]
/// async fn book(ctx: &mut Ctx) -> Result<String, StepError> { Ok("booking-1".into()) }
/// saga! { Trip(Ctx, ()) { quote, book } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), saga_runtime::SagaError> {
/// let trips = Trip::on(&Engine::in_memory());
/// let id = trips.start(Ctx).await?;
/// let mut steps = trips.step_results(id);
/// let first = steps.next().await.unwrap()?;
/// assert_eq!(first.output::<quote>().unwrap(), Some(4200));
/// let second = steps.next().await.unwrap()?;
/// assert_eq!(second.output::<book>().unwrap().as_deref(), Some("booking-1"));
/// assert!(steps.next().await.is_none(), "the saga ended");
/// # Ok(()) }
/// ```
pub struct StepResults<S: SagaKind> {
    inner: BoxStream<'static, Result<StepResult<S::Step>, SagaError>>,
}

impl<S: SagaKind> Stream for StepResults<S> {
    type Item = Result<StepResult<S::Step>, SagaError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl<S: SagaKind> std::fmt::Debug for StepResults<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepResults").finish_non_exhaustive()
    }
}

/// How many history entries one read takes.
const PAGE: usize = 256;

/// Where a stream is.
struct Follow<S: SagaKind> {
    engine: Engine,
    id: SagaId,
    /// The next history entry to read.
    next: u64,
    /// Results read and not yet handed out.
    ready: VecDeque<StepResult<S::Step>>,
    /// The saga ended: hand out what is ready, then stop.
    ended: bool,
    poll: Duration,
    /// The definition the saga runs.
    table: Table<S>,
}

impl<S: SagaKind> StepResults<S> {
    pub(crate) fn follow(engine: &Engine, table: Table<S>, id: SagaId) -> Self {
        let follow = Follow::<S> {
            engine: engine.clone(),
            id,
            next: 0,
            ready: VecDeque::new(),
            ended: false,
            poll: FIRST_POLL,
            table,
        };
        let inner = futures_util::stream::unfold(follow, |mut follow| async move {
            match follow.next_result().await {
                Ok(Some(result)) => Some((Ok(result), follow)),
                Ok(None) => None,
                Err(error) => {
                    // An error ends the stream after it is handed out.
                    follow.ended = true;
                    follow.ready.clear();
                    Some((Err(error), follow))
                }
            }
        });
        StepResults {
            inner: inner.boxed(),
        }
    }
}

impl<S: SagaKind> Follow<S> {
    async fn next_result(&mut self) -> Result<Option<StepResult<S::Step>>, SagaError> {
        let engine = self.engine.clone();
        loop {
            if let Some(result) = self.ready.pop_front() {
                return Ok(Some(result));
            }
            if self.ended {
                return Ok(None);
            }
            // Registered before the store is read: a write after the read still wakes it.
            let watching = engine.inner.watchers.wait(self.id);
            let written = watching.notify.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if self.read().await? {
                self.poll = FIRST_POLL;
                continue;
            }
            tokio::select! {
                () = &mut written => self.poll = FIRST_POLL,
                () = tokio::time::sleep(self.poll) => self.poll = (self.poll * 2).min(MAX_POLL),
            }
        }
    }

    /// Reads the history entries not read yet; `true` when there were some.
    async fn read(&mut self) -> Result<bool, SagaError> {
        let page = self
            .engine
            .inner
            .store
            .history(self.id, self.next, PAGE)
            .await?
            .ok_or(SagaError::NotFound(self.id))?;
        self.next += page.len() as u64;
        for event in &page {
            match &event.kind {
                SagaEventKind::StepCompleted {
                    step,
                    attempt,
                    duration,
                    output,
                } => {
                    if let Some(step) = step_of::<S>(&self.table, step) {
                        self.ready.push_back(StepResult {
                            step,
                            attempt: *attempt,
                            duration: *duration,
                            output: output.clone(),
                        });
                    }
                }
                SagaEventKind::SagaCompleted { .. }
                | SagaEventKind::SagaCompensated { .. }
                | SagaEventKind::SagaFailed { .. }
                | SagaEventKind::SagaParked { .. } => self.ended = true,
                SagaEventKind::SagaReopened { .. } => self.ended = false,
                _ => {}
            }
        }
        Ok(!page.is_empty())
    }
}

/// The step a completion names: the step itself, or the step its fallback stood in for.
fn step_of<S: SagaKind>(table: &Table<S>, name: &str) -> Option<S::Step> {
    let index = (0..table.steps.len()).find(|&step| {
        table.name_of(step) == name
            || (table.steps[step].fallback.is_some() && table.def(step, true).name() == name)
    })?;
    S::Step::at(index, table.name_of(index))
}
