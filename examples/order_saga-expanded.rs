// @generated: the expansion of `order_saga.rs` by `#[saga_step]` and `saga!`.
// Checked by `cargo test -p saga-macros`; regenerate with
// `SAGA_EXPAND=overwrite cargo test -p saga-macros` and review the diff.

//! Order fulfilment: reserve inventory, charge payment, send the confirmation email.
//!
//! `cargo run --example order_saga` completes an order, recorded in the SQLite file
//! `order_saga.db` in the current directory (`--db PATH` to change it, `--memory` to keep it in
//! memory), which `saga --db order_saga.db list` then shows; `cargo run --example order_saga --
//! --fail-payment` makes the payment fail for good and shows the compensation; `--mermaid`
//! prints the saga as a Mermaid flowchart.
//!
//! `cargo run --example order_saga -- --postgres URL --workers 3 [--orders 30]` starts three
//! worker processes on the PostgreSQL database at URL, enqueues the orders from this process
//! (which runs none), and reports which worker ran each order and how many orders a second the
//! workers completed (see `order_workers.rs`).
#![allow(unused_imports)]
#![cfg_attr(rustfmt, rustfmt::skip)]
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use saga_runtime::{
    saga, saga_step, Output, SagaEventKind, SagaOutcome, StepCx, StepError,
};
use serde::{Deserialize, Serialize};
#[path = "order_workers.rs"]
mod workers;
/// The order: what is persisted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrderCtx {
    order_id: String,
    amount_cents: u64,
    reservation: Option<String>,
    payment: Option<String>,
    email_sent: bool,
    /// The worker process that finished the order, when there are several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handled_by: Option<String>,
}
impl OrderCtx {
    /// A new order.
    pub fn new(order_id: &str, amount_cents: u64) -> Self {
        OrderCtx {
            order_id: order_id.into(),
            amount_cents,
            ..OrderCtx::default()
        }
    }
}
/// Clients of the inventory, payment and email services; never persisted. The services here
/// are fakes that keep what was done to them, each keyed so that a request sent twice (a step
/// run again after a crash) takes effect once, as real ones do with idempotency keys.
#[derive(Debug, Default)]
pub struct Services {
    fail_payment: bool,
    payment_calls: AtomicU32,
    /// Stock held, by reservation.
    reservations: Mutex<BTreeSet<String>>,
    /// Amounts charged, by payment.
    payments: Mutex<BTreeMap<String, u64>>,
    /// Confirmations sent, by order.
    emails: Mutex<BTreeSet<String>>,
    /// The worker process these run in, when there are several.
    worker: Option<String>,
    /// Whether the steps keep quiet (many orders).
    quiet: bool,
}
impl Services {
    /// The services; with `fail_payment`, the payment gateway is unavailable twice, then
    /// declines the card.
    pub fn new(fail_payment: bool) -> Self {
        Services {
            fail_payment,
            ..Services::default()
        }
    }
    /// What the steps did to the services: stock held, amounts charged, confirmations sent.
    pub fn effects(
        &self,
    ) -> (BTreeSet<String>, BTreeMap<String, u64>, BTreeSet<String>) {
        (
            lock(&self.reservations).clone(),
            lock(&self.payments).clone(),
            lock(&self.emails).clone(),
        )
    }
    /// What a step did, for the reader.
    fn say(&self, what: std::fmt::Arguments<'_>) {
        match (&self.worker, self.quiet) {
            (_, true) => {}
            (Some(worker), false) => println!("  [{worker}] {what}"),
            (None, false) => println!("  {what}"),
        }
    }
}
/// A fake service's state (a step that panicked while holding it left it whole: each change is
/// one insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
async fn reserve_inventory(
    ctx: &mut OrderCtx,
    cx: &StepCx<Services>,
) -> Result<(), StepError> {
    let reservation = format!("res-{}", cx.idempotency_key());
    lock(&cx.deps().reservations).insert(reservation.clone());
    ctx.reservation = Some(reservation);
    cx.deps()
        .say(format_args!("reserve_inventory: reserved stock for {}", ctx.order_id));
    Ok(())
}
#[doc(hidden)]
#[allow(non_camel_case_types, dead_code)]
struct reserve_inventory {
    _private: (),
}
#[automatically_derived]
impl ::saga_runtime::__private::Declared for reserve_inventory {}
#[automatically_derived]
impl<__P> ::saga_runtime::__private::InputsRunBefore<__P> for reserve_inventory {}
#[automatically_derived]
impl ::saga_runtime::__private::NamedStep for reserve_inventory {
    const NAME: &'static str = "reserve_inventory";
    type Output = <Result<
        (),
        StepError,
    > as ::saga_runtime::__private::StepResult>::Value;
}
#[automatically_derived]
impl ::saga_runtime::__private::SagaStep<OrderCtx, Services> for reserve_inventory {
    const DESCRIPTION: ::saga_runtime::__private::StepDescription = ::saga_runtime::__private::StepDescription {
        name: "reserve_inventory",
        policy: ::saga_runtime::__private::StepPolicy {
            timeout: ::saga_runtime::__private::Some(
                ::saga_runtime::__private::Duration::from_secs(5u64),
            ),
            retries: 2u32,
            backoff: ::saga_runtime::__private::Duration::from_millis(50u64),
            undo: ::saga_runtime::__private::Undo::Compensate,
            ..::saga_runtime::__private::StepPolicy::DEFAULT
        },
        compensation: ::saga_runtime::__private::Some("release_inventory"),
        fallback: ::saga_runtime::__private::None,
        inputs: &[],
        output: ::saga_runtime::__private::None,
        remote: ::saga_runtime::__private::None,
    };
    const FALLBACK: ::saga_runtime::__private::Option<
        fn() -> ::saga_runtime::__private::StepDef<OrderCtx, Services>,
    > = ::saga_runtime::__private::None;
    fn action<'a>(
        ctx: &'a mut OrderCtx,
        cx: &'a ::saga_runtime::__private::StepCx<Services>,
    ) -> ::saga_runtime::__private::StepFuture<'a> {
        ::saga_runtime::__private::action::<
            Result<(), StepError>,
            _,
        >(reserve_inventory(ctx, cx))
    }
    fn compensate<'a>(
        ctx: &'a mut OrderCtx,
        cx: &'a ::saga_runtime::__private::StepCx<Services>,
    ) -> ::saga_runtime::__private::StepFuture<'a> {
        ::saga_runtime::__private::compensation_with::<
            reserve_inventory,
            &'a mut OrderCtx,
            StepCx<Services>,
            _,
            _,
        >(release_inventory, ctx, cx, cx.recorded_output())
    }
}
#[automatically_derived]
impl ::saga_runtime::__private::DeclaresUndo for reserve_inventory {}
#[automatically_derived]
impl ::saga_runtime::__private::FallbackDeclaresUndo for reserve_inventory {}
#[automatically_derived]
impl ::saga_runtime::__private::NotPivot for reserve_inventory {}
async fn release_inventory(
    ctx: &mut OrderCtx,
    cx: &StepCx<Services>,
) -> Result<(), StepError> {
    let reservation = ctx.reservation.take().unwrap_or_default();
    lock(&cx.deps().reservations).remove(&reservation);
    cx.deps().say(format_args!("release_inventory: released {reservation}"));
    Ok(())
}
/// What the payment service answered: `charge_payment`'s output, recorded with its completion
/// and handed to `refund_payment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentProcessed {
    /// The payment to refund.
    pub payment_id: String,
    /// How much was charged.
    pub amount_cents: u64,
}
async fn charge_payment(
    ctx: &mut OrderCtx,
    cx: &StepCx<Services>,
) -> Result<PaymentProcessed, StepError> {
    let call = cx.deps().payment_calls.fetch_add(1, Ordering::SeqCst) + 1;
    if cx.deps().fail_payment {
        cx.deps().say(format_args!("charge_payment: attempt {} declined", cx.attempt()));
        return Err(
            if call < 3 {
                StepError::transient("payment gateway unavailable")
            } else {
                StepError::permanent("card declined")
            },
        );
    }
    let payment = format!("pay-{}", ctx.order_id);
    lock(&cx.deps().payments).insert(payment.clone(), ctx.amount_cents);
    ctx.payment = Some(payment.clone());
    cx.deps().say(format_args!("charge_payment: charged {} cents", ctx.amount_cents));
    Ok(PaymentProcessed {
        payment_id: payment,
        amount_cents: ctx.amount_cents,
    })
}
#[doc(hidden)]
#[allow(non_camel_case_types, dead_code)]
struct charge_payment {
    _private: (),
}
#[automatically_derived]
impl ::saga_runtime::__private::Declared for charge_payment {}
#[automatically_derived]
impl<__P> ::saga_runtime::__private::InputsRunBefore<__P> for charge_payment {}
#[automatically_derived]
impl ::saga_runtime::__private::NamedStep for charge_payment {
    const NAME: &'static str = "charge_payment";
    type Output = <Result<
        PaymentProcessed,
        StepError,
    > as ::saga_runtime::__private::StepResult>::Value;
}
#[automatically_derived]
impl ::saga_runtime::__private::SagaStep<OrderCtx, Services> for charge_payment {
    const DESCRIPTION: ::saga_runtime::__private::StepDescription = ::saga_runtime::__private::StepDescription {
        name: "charge_payment",
        policy: ::saga_runtime::__private::StepPolicy {
            timeout: ::saga_runtime::__private::Some(
                ::saga_runtime::__private::Duration::from_secs(10u64),
            ),
            retries: 2u32,
            backoff: ::saga_runtime::__private::Duration::from_millis(50u64),
            undo: ::saga_runtime::__private::Undo::Compensate,
            ..::saga_runtime::__private::StepPolicy::DEFAULT
        },
        compensation: ::saga_runtime::__private::Some("refund_payment"),
        fallback: ::saga_runtime::__private::None,
        inputs: &[],
        output: ::saga_runtime::__private::Some("PaymentProcessed"),
        remote: ::saga_runtime::__private::None,
    };
    const FALLBACK: ::saga_runtime::__private::Option<
        fn() -> ::saga_runtime::__private::StepDef<OrderCtx, Services>,
    > = ::saga_runtime::__private::None;
    fn action<'a>(
        ctx: &'a mut OrderCtx,
        cx: &'a ::saga_runtime::__private::StepCx<Services>,
    ) -> ::saga_runtime::__private::StepFuture<'a> {
        ::saga_runtime::__private::action::<
            Result<PaymentProcessed, StepError>,
            _,
        >(charge_payment(ctx, cx))
    }
    fn compensate<'a>(
        ctx: &'a mut OrderCtx,
        cx: &'a ::saga_runtime::__private::StepCx<Services>,
    ) -> ::saga_runtime::__private::StepFuture<'a> {
        ::saga_runtime::__private::compensation_with::<
            charge_payment,
            &'a mut OrderCtx,
            StepCx<Services>,
            _,
            _,
        >(refund_payment, ctx, cx, cx.recorded_output())
    }
}
#[automatically_derived]
impl ::saga_runtime::__private::DeclaresUndo for charge_payment {}
#[automatically_derived]
impl ::saga_runtime::__private::FallbackDeclaresUndo for charge_payment {}
#[automatically_derived]
impl ::saga_runtime::__private::NotPivot for charge_payment {}
/// Receives what `charge_payment` returned, read back from the store after a crash.
async fn refund_payment(
    ctx: &mut OrderCtx,
    cx: &StepCx<Services>,
    payment: PaymentProcessed,
) -> Result<(), StepError> {
    lock(&cx.deps().payments).remove(&payment.payment_id);
    ctx.payment = None;
    cx.deps()
        .say(
            format_args!(
                "refund_payment: refunded {} ({} cents)", payment.payment_id, payment
                .amount_cents
            ),
        );
    Ok(())
}
/// Takes what `charge_payment` returned, to put the payment in the email.
async fn send_confirmation_email(
    ctx: &mut OrderCtx,
    cx: &StepCx<Services>,
    payment: Output<charge_payment>,
) -> Result<(), StepError> {
    lock(&cx.deps().emails).insert(ctx.order_id.clone());
    ctx.email_sent = true;
    ctx.handled_by = cx.deps().worker.clone();
    cx.deps()
        .say(
            format_args!(
                "send_confirmation_email: sent for {} (payment {})", ctx.order_id,
                payment.payment_id
            ),
        );
    Ok(())
}
#[doc(hidden)]
#[allow(non_camel_case_types, dead_code)]
struct send_confirmation_email {
    _private: (),
}
#[automatically_derived]
impl ::saga_runtime::__private::Declared for send_confirmation_email {}
#[automatically_derived]
impl<__P> ::saga_runtime::__private::InputsRunBefore<__P> for send_confirmation_email
where
    <Output<
        charge_payment,
    > as ::saga_runtime::__private::StepInput>::From: ::saga_runtime::__private::RunsBefore<
        __P,
    >,
{}
#[automatically_derived]
impl ::saga_runtime::__private::NamedStep for send_confirmation_email {
    const NAME: &'static str = "send_confirmation_email";
    type Output = <Result<
        (),
        StepError,
    > as ::saga_runtime::__private::StepResult>::Value;
}
#[automatically_derived]
impl ::saga_runtime::__private::SagaStep<OrderCtx, Services>
for send_confirmation_email {
    const DESCRIPTION: ::saga_runtime::__private::StepDescription = ::saga_runtime::__private::StepDescription {
        name: "send_confirmation_email",
        policy: ::saga_runtime::__private::StepPolicy {
            timeout: ::saga_runtime::__private::Some(
                ::saga_runtime::__private::Duration::from_secs(5u64),
            ),
            retries: 3u32,
            undo: ::saga_runtime::__private::Undo::Unspecified,
            ..::saga_runtime::__private::StepPolicy::DEFAULT
        },
        compensation: ::saga_runtime::__private::None,
        fallback: ::saga_runtime::__private::None,
        inputs: &[
            <Output<charge_payment> as ::saga_runtime::__private::StepInput>::NAME,
        ],
        output: ::saga_runtime::__private::None,
        remote: ::saga_runtime::__private::None,
    };
    const FALLBACK: ::saga_runtime::__private::Option<
        fn() -> ::saga_runtime::__private::StepDef<OrderCtx, Services>,
    > = ::saga_runtime::__private::None;
    fn action<'a>(
        ctx: &'a mut OrderCtx,
        cx: &'a ::saga_runtime::__private::StepCx<Services>,
    ) -> ::saga_runtime::__private::StepFuture<'a> {
        let __input0 = match <Output<
            charge_payment,
        > as ::saga_runtime::__private::StepInput>::read(cx) {
            ::saga_runtime::__private::Ok(input) => input,
            ::saga_runtime::__private::Err(error) => {
                return ::saga_runtime::__private::failed(error);
            }
        };
        ::saga_runtime::__private::action::<
            Result<(), StepError>,
            _,
        >(send_confirmation_email(ctx, cx, __input0))
    }
    fn compensate<'a>(
        _ctx: &'a mut OrderCtx,
        _cx: &'a ::saga_runtime::__private::StepCx<Services>,
    ) -> ::saga_runtime::__private::StepFuture<'a> {
        ::saga_runtime::__private::no_compensation()
    }
}
#[automatically_derived]
impl ::saga_runtime::__private::NotPivot for send_confirmation_email {}
/// Order fulfilment.
pub struct OrderSaga;
///The steps of [`OrderSaga`], in order; displayed as the step's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(clippy::enum_variant_names)]
pub enum OrderSagaStep {
    ///`reserve_inventory`
    ReserveInventory,
    ///`charge_payment`
    ChargePayment,
    ///`send_confirmation_email`
    SendConfirmationEmail,
}
impl OrderSagaStep {
    /// Every step, in order.
    pub const ALL: [Self; 3usize] = [
        Self::ReserveInventory,
        Self::ChargePayment,
        Self::SendConfirmationEmail,
    ];
    /// The step's name: its function's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ReserveInventory => "reserve_inventory",
            Self::ChargePayment => "charge_payment",
            Self::SendConfirmationEmail => "send_confirmation_email",
        }
    }
    /// The step's position, from 0.
    pub const fn index(self) -> usize {
        self as usize
    }
}
#[automatically_derived]
impl ::core::fmt::Display for OrderSagaStep {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        f.write_str(self.name())
    }
}
#[automatically_derived]
impl ::saga_runtime::__private::StepEnum for OrderSagaStep {
    const ALL: &'static [Self] = &OrderSagaStep::ALL;
    fn index(self) -> usize {
        OrderSagaStep::index(self)
    }
    fn name(self) -> &'static str {
        OrderSagaStep::name(self)
    }
}
///The status of a [`OrderSaga`].
pub type OrderSagaStatus = ::saga_runtime::__private::SagaStatus<OrderSagaStep>;
///How a [`OrderSaga`] ended.
pub type OrderSagaOutcome = ::saga_runtime::__private::SagaOutcome<
    OrderCtx,
    OrderSagaStep,
>;
#[doc(hidden)]
#[allow(non_camel_case_types, clippy::all)]
const _: () = {
    #[allow(unused_imports)]
    use ::saga_runtime::__private::not_steps::*;
    #[allow(unused_imports)]
    use reserve_inventory as __SagaStep0;
    ::saga_runtime::__private::assert_listed::<__SagaStep0, _>(&__SagaStep0);
    #[allow(unused_imports)]
    use charge_payment as __SagaStep1;
    ::saga_runtime::__private::assert_listed::<__SagaStep1, _>(&__SagaStep1);
    #[allow(unused_imports)]
    use send_confirmation_email as __SagaStep2;
    ::saga_runtime::__private::assert_listed::<__SagaStep2, _>(&__SagaStep2);
    #[automatically_derived]
    impl ::saga_runtime::__private::Saga for OrderSaga {
        type Context = OrderCtx;
        type Deps = Services;
        type Step = OrderSagaStep;
        const NAME: &'static str = "OrderSaga";
        const OPTIONS: ::saga_runtime::__private::SagaOptions = ::saga_runtime::__private::SagaOptions {
            best_effort_rollback: false,
            deadline: ::saga_runtime::__private::None,
        };
        fn steps() -> &'static [::saga_runtime::__private::StepDef<OrderCtx, Services>] {
            static STEPS: [::saga_runtime::__private::StepDef<
                OrderCtx,
                Services,
            >; 3usize] = [
                ::saga_runtime::__private::StepDef::<
                    OrderCtx,
                    Services,
                >::of::<__SagaStep0>(),
                ::saga_runtime::__private::StepDef::<
                    OrderCtx,
                    Services,
                >::of::<__SagaStep1>(),
                ::saga_runtime::__private::StepDef::<
                    OrderCtx,
                    Services,
                >::of::<__SagaStep2>(),
            ];
            &STEPS
        }
        fn metrics() -> &'static ::saga_runtime::__private::SagaMetrics {
            static METRICS: ::saga_runtime::__private::OnceLock<
                ::saga_runtime::__private::SagaMetrics,
            > = ::saga_runtime::__private::OnceLock::new();
            METRICS.get_or_init(::saga_runtime::__private::SagaMetrics::new::<Self>)
        }
        fn table() -> &'static ::saga_runtime::__private::StepTable<OrderCtx, Services> {
            static TABLE: ::saga_runtime::__private::OnceLock<
                ::saga_runtime::__private::StepTable<OrderCtx, Services>,
            > = ::saga_runtime::__private::OnceLock::new();
            TABLE.get_or_init(::saga_runtime::__private::StepTable::generated::<Self>)
        }
        fn default_deps() -> ::saga_runtime::__private::Option<
            ::std::sync::Arc<Services>,
        > {
            #[allow(unused_imports)]
            use ::saga_runtime::__private::{DepsDefault as _, DepsNoDefault as _};
            (&::saga_runtime::__private::DepsProbe::<Services>::new()).default_deps()
        }
    }
    ::saga_runtime::__private::assert_declares_undo::<__SagaStep0>();
    ::saga_runtime::__private::assert_declares_undo::<__SagaStep1>();
    struct __SagaAt0;
    struct __SagaAt1;
    struct __SagaAt2;
    #[diagnostic::do_not_recommend]
    impl ::saga_runtime::__private::RunsBefore<__SagaAt1> for __SagaStep0 {}
    #[diagnostic::do_not_recommend]
    impl ::saga_runtime::__private::RunsBefore<__SagaAt2> for __SagaStep0 {}
    #[diagnostic::do_not_recommend]
    impl ::saga_runtime::__private::RunsBefore<__SagaAt2> for __SagaStep1 {}
    ::saga_runtime::__private::assert_inputs_run_before::<__SagaStep0, __SagaAt0>();
    ::saga_runtime::__private::assert_inputs_run_before::<__SagaStep1, __SagaAt1>();
    ::saga_runtime::__private::assert_inputs_run_before::<__SagaStep2, __SagaAt2>();
};
impl OrderSaga {
    /// Runs the saga to a terminal state on the global in-memory engine. Needs
    /// dependencies that are `Default`; otherwise use `run_with`.
    pub async fn run(
        ctx: OrderCtx,
    ) -> ::saga_runtime::__private::Result<
        OrderSagaOutcome,
        ::saga_runtime::__private::SagaError,
    >
    where
        for<'__saga> Services: ::core::default::Default,
    {
        ::saga_runtime::__private::SagaClient::<OrderSaga>::global().run(ctx).await
    }
    /// Runs the saga with these dependencies to a terminal state on the global engine.
    pub async fn run_with(
        ctx: OrderCtx,
        deps: impl ::core::convert::Into<::std::sync::Arc<Services>>,
    ) -> ::saga_runtime::__private::Result<
        OrderSagaOutcome,
        ::saga_runtime::__private::SagaError,
    > {
        ::saga_runtime::__private::SagaClient::<OrderSaga>::global()
            .run_with(ctx, deps)
            .await
    }
    /// Records the saga on the global engine and runs it in the background; returns its id.
    pub async fn start(
        ctx: OrderCtx,
    ) -> ::saga_runtime::__private::Result<
        ::saga_runtime::__private::SagaId,
        ::saga_runtime::__private::SagaError,
    >
    where
        for<'__saga> Services: ::core::default::Default,
    {
        ::saga_runtime::__private::SagaClient::<OrderSaga>::global().start(ctx).await
    }
    /// Like `start`, with these dependencies.
    pub async fn start_with(
        ctx: OrderCtx,
        deps: impl ::core::convert::Into<::std::sync::Arc<Services>>,
    ) -> ::saga_runtime::__private::Result<
        ::saga_runtime::__private::SagaId,
        ::saga_runtime::__private::SagaError,
    > {
        ::saga_runtime::__private::SagaClient::<OrderSaga>::global()
            .start_with(ctx, deps)
            .await
    }
    /// The status of a saga of this type on the global engine.
    pub async fn status(
        id: ::saga_runtime::__private::SagaId,
    ) -> ::saga_runtime::__private::Result<
        OrderSagaStatus,
        ::saga_runtime::__private::SagaError,
    > {
        ::saga_runtime::__private::SagaClient::<OrderSaga>::global().status(id).await
    }
    /// Waits until a saga of this type on the global engine has ended; returns its
    /// outcome with its final context.
    pub async fn wait(
        id: ::saga_runtime::__private::SagaId,
    ) -> ::saga_runtime::__private::Result<
        OrderSagaOutcome,
        ::saga_runtime::__private::SagaError,
    > {
        ::saga_runtime::__private::SagaClient::<OrderSaga>::global().wait(id).await
    }
    /// Asks a saga of this type on the global engine to stop at its next step boundary
    /// and compensate, wherever it runs.
    pub async fn cancel(
        id: ::saga_runtime::__private::SagaId,
    ) -> ::saga_runtime::__private::Result<(), ::saga_runtime::__private::SagaError> {
        ::saga_runtime::__private::SagaClient::<OrderSaga>::global().cancel(id).await
    }
    /// A run with options (id, idempotency key, deadline, dependencies) on the global
    /// engine.
    pub fn request(ctx: OrderCtx) -> ::saga_runtime::__private::SagaRequest<OrderSaga> {
        ::saga_runtime::__private::SagaClient::<OrderSaga>::global().request(ctx)
    }
    /// This saga type on another engine.
    pub fn on(
        engine: &::saga_runtime::__private::Engine,
    ) -> ::saga_runtime::__private::SagaClient<OrderSaga> {
        engine.saga::<OrderSaga>()
    }
    /// The saga's static description: its steps and their policies.
    pub fn description() -> ::saga_runtime::__private::SagaDescription {
        <OrderSaga as ::saga_runtime::__private::Saga>::description()
    }
}
#[tokio::main]
async fn main() -> Result<(), saga_runtime::SagaError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--postgres") {
        return workers::main(&args, at).await;
    }
    if args.iter().any(|a| a == "--mermaid") {
        print!("{}", < OrderSaga as saga_runtime::Saga >::mermaid());
        return Ok(());
    }
    let fail_payment = std::env::args().any(|a| a == "--fail-payment");
    print!("{}", OrderSaga::description());
    if !args.iter().any(|a| a == "--memory") {
        let path = args
            .iter()
            .position(|a| a == "--db")
            .and_then(|at| args.get(at + 1))
            .map_or("order_saga.db", String::as_str);
        let engine = saga_runtime::Engine::builder()
            .sqlite(path)?
            .register::<OrderSaga>(Services::default())
            .build();
        let recovered = engine.recover().await?;
        let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
        println!(
            "sagas recorded in {} ({} resumed from an earlier run)", shown.display(),
            recovered.resumed.len()
        );
        if engine.make_global().is_err() {
            eprintln!("the global engine was set already; this run stays in memory");
        }
    }
    let ctx = OrderCtx::new("order-42", 4_200);
    let services = Services::new(fail_payment);
    println!(
        "running OrderSaga{}", if fail_payment { " (payment will fail)" } else { "" }
    );
    let outcome = OrderSaga::run_with(ctx, services).await?;
    match &outcome {
        SagaOutcome::Completed { id, ctx, .. } => {
            println!("order completed (saga {id}): {ctx:?}");
            if let Ok(Some(payment)) = outcome.output::<charge_payment>() {
                println!("charge_payment returned {payment:?}");
            }
        }
        SagaOutcome::Compensated { id, cause, ctx, .. } => {
            println!("order compensated (saga {id}): {cause}");
            println!("final context: {ctx:?}");
        }
        other => println!("order needs attention: {other:?}"),
    }
    println!("timeline:");
    for event in OrderSaga::on(saga_runtime::Engine::global())
        .history(outcome.id())
        .await?
    {
        match event.kind {
            SagaEventKind::StepStarted { step, phase, attempt } => {
                println!("  {phase:?} {step} started (attempt {attempt})")
            }
            SagaEventKind::RetryScheduled { step, attempt, delay, error, .. } => {
                println!(
                    "  {step} attempt {attempt} failed ({error}); retry in {delay:?}"
                )
            }
            SagaEventKind::StepFailed { step, error, .. } => {
                println!("  {step} failed: {error}")
            }
            SagaEventKind::CompensationStarted { .. } => {
                println!("  compensation started")
            }
            SagaEventKind::StepCompensated { step, .. } => {
                println!("  {step} compensated")
            }
            other => println!("  {other:?}"),
        }
    }
    let status = OrderSaga::status(outcome.id()).await?;
    println!("status: {status}");
    Ok(())
}
