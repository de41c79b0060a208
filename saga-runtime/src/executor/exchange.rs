//! An attempt that may be an exchange with a participant service (see [`crate::remote`]): a
//! `remote` step's action, or a compensation that returns a command. The command is built by
//! the step's function, sent through the engine's bus, and its reply is the attempt's result; a
//! long wait lets the saga go (see [`crate::engine`]'s reply routing), and a resumed exchange
//! keeps to the timeout it started with.

use std::time::Duration;

use super::attempt::guarded_within;
use super::Run;
use crate::engine::{Engine, Exchanged};
use crate::machine::Task;
use crate::step::{Phase, StepDef};
use crate::{SagaError, SagaKind, StepCx, StepError};

/// How long a saga let go to wait for a reply to a command without a timeout waits before it is
/// looked at again: its command is sent again under the same message id, a duplicate the bus
/// drops (this is shorter than the buses' default duplicate window of 2 minutes; past the window,
/// the service sees it again under the same key).
const RECHECK: Duration = Duration::from_secs(60);

/// Runs one attempt that may be carried out by a participant service: a `remote` step's action,
/// or a compensation (which may return a command). `build` (the step's function, run as an
/// attempt without a timeout of its own) makes the command, which goes to its service through
/// `engine`'s bus; the reply is the result. `within` (time left, timeout) applies to the whole
/// exchange; with a `patience`, the wait for the reply ends after it ([`Exchanged::Pending`]).
pub(super) async fn remote_once<D>(
    engine: &Engine,
    cx: &StepCx<D>,
    build: impl std::future::Future<Output = Result<Option<crate::OutputValue>, StepError>>,
    within: Option<(Duration, Duration)>,
    patience: Option<Duration>,
) -> Result<Exchanged, StepError> {
    // Resumed past its timeout, even with a reply in hand (it came after the timeout: a late
    // reply is never applied).
    if let Some((_, limit)) = within.filter(|(left, _)| left.is_zero()) {
        // Resumed past its timeout: it timed out, whatever its service did.
        return Err(StepError::timeout(limit));
    }
    let exchange = async {
        let built = build.await?;
        send_built(engine, cx, built, patience).await
    };
    guarded_within(exchange, within, "step").await
}

/// Runs one attempt of a compensation: `build` (the compensation, under its whole timeout) runs
/// as a local attempt does, and only a compensation that returns a command becomes an exchange
/// with the command's service, in what is left of `timeout`. Most compensations undo their step
/// themselves: they pay for no exchange (the caller boxes this future, which holds one).
pub(super) async fn compensation_once<D>(
    engine: &Engine,
    cx: &StepCx<D>,
    build: impl std::future::Future<Output = Result<Option<crate::OutputValue>, StepError>>,
    timeout: Option<Duration>,
    patience: Option<Duration>,
) -> Result<Exchanged, StepError> {
    let begun = tokio::time::Instant::now();
    let built = build.await?;
    if built
        .as_ref()
        .is_none_or(|value| value.as_outbound().is_none())
    {
        return Ok(Exchanged::Reply(built));
    }
    let within = timeout.map(|limit| (limit.saturating_sub(begun.elapsed()), limit));
    guarded_within(send_built(engine, cx, built, patience), within, "step").await
}

/// Sends the command an attempt built, if it built one, to its service and waits for the reply
/// (or, with a `patience`, that long); what it built otherwise is the attempt's result.
async fn send_built<D>(
    engine: &Engine,
    cx: &StepCx<D>,
    built: Option<crate::OutputValue>,
    patience: Option<Duration>,
) -> Result<Exchanged, StepError> {
    let Some(outbound) = built.as_ref().and_then(|value| value.as_outbound()) else {
        return Ok(Exchanged::Reply(built));
    };
    match engine
        .call_remote(cx, outbound.target, outbound.command.clone(), patience)
        .await?
    {
        // A compensation records nothing: its service's reply only says it is done.
        Exchanged::Reply(reply) => Ok(Exchanged::Reply(
            reply.filter(|_| cx.phase() == Phase::Action),
        )),
        Exchanged::Pending => Ok(Exchanged::Pending),
    }
}

/// An exchange's result as an attempt's (a member waits for its reply to the end).
pub(super) fn replied(
    exchanged: Result<Exchanged, StepError>,
) -> Result<Option<crate::OutputValue>, StepError> {
    match exchanged? {
        Exchanged::Reply(reply) => Ok(reply),
        Exchanged::Pending => Err(StepError::transient("the reply was not waited for")),
    }
}

/// Whether an attempt of `task` may be an exchange with a participant service: a `remote`
/// step's action, or any compensation (one may return a command).
pub(super) fn may_be_remote<C, D>(task: Task, def: &StepDef<C, D>) -> bool {
    match task.phase {
        Phase::Action => def.description.remote.is_some(),
        Phase::Compensation => true,
    }
}

impl<S: SagaKind> Run<S> {
    /// How long an exchange with a service that has `left` of its timeout waits for the reply
    /// in this task before the saga is let go to wait without one: the durable-timer threshold,
    /// when the saga can be let go and the wait may be longer than twice that; otherwise the
    /// whole wait is in the task.
    pub(super) fn patience(&self, left: Option<Duration>) -> Option<Duration> {
        let engine = &self.engine;
        let threshold = engine.inner.timer_threshold;
        let lets_go = engine.inner.shared
            && engine.claims()
            && engine.registers(self.table.name)
            && !self.cancel.was_requested()
            && left.is_none_or(|left| left > threshold * 2);
        lets_go.then_some(threshold)
    }

    /// Lets the saga go while its attempt, started at `since` with `timeout`, waits for its
    /// participant's reply: the reply wakes it on whichever engine it comes to, or its timeout
    /// does (without one, it is looked at again after [`RECHECK`], its command sent again under
    /// the same message id).
    pub(super) async fn let_go_for_reply(
        &mut self,
        since: std::time::SystemTime,
        timeout: Option<Duration>,
    ) -> Result<(), SagaError> {
        self.flush().await?;
        let wake_at = match timeout {
            Some(limit) => since + limit,
            None => self.now() + RECHECK,
        };
        self.engine
            .inner
            .store
            .release(self.id, self.fence, Some(wake_at))
            .await?;
        self.engine.set_timer(wake_at);
        Ok(())
    }
}
