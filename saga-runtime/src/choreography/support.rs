//! What `#[saga_handler]` and `choreography!` expand to use (re-exported, hidden, from the
//! runtime's private module): the compile-time checks of a flow, as marker traits that only
//! `Check<true>` implements (so that a failed check is one error, with its own message, at the
//! handler), and the boxing of handlers' runs.

use std::future::Future;

use crate::StepError;

/// Implemented by `#[saga_handler]` for handlers that say how their work is undone
/// (`compensate` or `nothing_to_undo`); `choreography!` requires it of every handler it lists.
#[diagnostic::on_unimplemented(
    message = "handler `{Self}` says nothing about undoing its work",
    label = "a later handler's failure may need to undo it",
    note = "add `compensate = <fn>` or `nothing_to_undo` to its `#[saga_handler(...)]`"
)]
pub trait HandlerDeclaresUndo {}

/// Fails to compile, at the handler's name in `choreography!`, for a handler that says nothing
/// about undoing its work.
pub const fn assert_handler_declares_undo<T: HandlerDeclaresUndo>() {}

/// A `choreography!` check's result, as a type: only `Check<true>` passes.
pub struct Check<const OK: bool>;

/// Passes for a handler whose event a handler of the flow takes, or that is the flow's end.
#[diagnostic::on_unimplemented(
    message = "this handler emits an event that no handler of the flow takes and that is not the flow's end",
    label = "its event goes nowhere",
    note = "list a handler that takes it, or end the flow with it (`Flow(Start => End)`)"
)]
pub trait EmitsTaken {}
impl EmitsTaken for Check<true> {}

/// Fails to compile unless `Check<OK>` passes [`EmitsTaken`].
pub const fn assert_emits_taken<const OK: bool>()
where
    Check<OK>: EmitsTaken,
{
}

/// Passes for a handler whose event is the flow's start or one a handler of the flow emits.
#[diagnostic::on_unimplemented(
    message = "this handler takes an event that is not the flow's start and that no handler of the flow emits",
    label = "it would never run",
    note = "start the flow with it (`Flow(Start => End)`), or list a handler that emits it"
)]
pub trait TakesEmitted {}
impl TakesEmitted for Check<true> {}

/// Fails to compile unless `Check<OK>` passes [`TakesEmitted`].
pub const fn assert_takes_emitted<const OK: bool>()
where
    Check<OK>: TakesEmitted,
{
}

/// Passes for a handler listed once in its flow.
#[diagnostic::on_unimplemented(
    message = "this handler is listed twice in the flow (or two handlers share its name)",
    label = "listed again here",
    note = "a flow's handlers are its steps: each has a name of its own"
)]
pub trait ListedOnce {}
impl ListedOnce for Check<true> {}

/// Fails to compile unless `Check<OK>` passes [`ListedOnce`].
pub const fn assert_listed_once<const OK: bool>()
where
    Check<OK>: ListedOnce,
{
}

/// Boxes a run of a handler (`#[saga_handler]`'s function `F`'s future) as the flow runs it.
pub fn handler_run<'a, E, F>(future: F) -> crate::choreography::HandlerFuture<'a, E>
where
    F: Future<Output = Result<E, StepError>> + Send + 'a,
{
    Box::pin(future)
}

/// Runs compensation `f` of a handler that takes `On`, emits `Emits` and has dependencies `D`;
/// fails to compile, at the `compensate` path, when `f` does not fit.
pub fn handler_compensation<'a, On, Emits, D, F, Fut>(
    f: F,
    event: On,
    emitted: Emits,
    cx: &'a crate::choreography::HandlerCx<D>,
) -> crate::choreography::HandlerFuture<'a, ()>
where
    F: FnOnce(On, Emits, &'a crate::choreography::HandlerCx<D>) -> Fut,
    Fut: Future<Output = Result<(), StepError>> + Send + 'a,
{
    Box::pin(f(event, emitted, cx))
}

/// A handler with nothing to undo: its compensation is never run.
pub fn handler_nothing_to_undo<'a>() -> crate::choreography::HandlerFuture<'a, ()> {
    Box::pin(std::future::ready(Ok(())))
}

/// Boxes a run of a participant's handler of command `C` (`#[saga_handler]`'s function's
/// future); fails to compile, at the handler's return type, when it does not return
/// `Result<C::Reply, StepError>`.
pub fn command_run<C, F>(future: F) -> crate::choreography::HandlerFuture<'static, C::Reply>
where
    C: crate::remote::Command,
    F: Future<Output = Result<C::Reply, StepError>> + Send + 'static,
{
    Box::pin(future)
}

/// Passes for a handler that takes an event no earlier handler of the flow takes.
#[diagnostic::on_unimplemented(
    message = "this handler takes an event an earlier handler of the flow takes",
    label = "a second handler of the same event",
    note = "a flow is a chain: each event goes to one handler (one service); fan-out is not supported"
)]
pub trait TakesAlone {}
impl TakesAlone for Check<true> {}

/// Fails to compile unless `Check<OK>` passes [`TakesAlone`].
pub const fn assert_takes_alone<const OK: bool>()
where
    Check<OK>: TakesAlone,
{
}

/// Passes for a handler whose event no earlier handler emits, and that is neither the flow's
/// start nor the event it takes.
#[diagnostic::on_unimplemented(
    message = "this handler emits the flow's start, the event it takes, or an event an earlier handler emits",
    label = "its event would loop or merge",
    note = "a flow is a chain: each event is emitted by one handler, and nothing emits the start"
)]
pub trait EmitsAlone {}
impl EmitsAlone for Check<true> {}

/// Fails to compile unless `Check<OK>` passes [`EmitsAlone`].
pub const fn assert_emits_alone<const OK: bool>()
where
    Check<OK>: EmitsAlone,
{
}

/// Passes for a flow whose start a handler takes, whose end a handler emits, whose end no
/// handler takes, and whose start is not its end.
#[diagnostic::on_unimplemented(
    message = "this flow is not whole: no handler takes its start, none emits its end, a handler takes its end, or its start is its end",
    label = "the flow",
    note = "a flow runs from its start event, taken by a handler, to its end event, emitted by one and taken by none"
)]
pub trait WholeFlow {}
impl WholeFlow for Check<true> {}

/// Fails to compile unless `Check<OK>` passes [`WholeFlow`].
pub const fn assert_whole_flow<const OK: bool>()
where
    Check<OK>: WholeFlow,
{
}
