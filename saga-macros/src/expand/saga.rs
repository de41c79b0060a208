//! Expansion of `saga!`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Ident;

use super::{duration, private};
use crate::ast::Saga;

// Input:
//
//     /// Order fulfilment.
//     pub OrderSaga(OrderCtx, Services) { reserve_inventory, charge_payment }
//
// Output:
//
//     /// Order fulfilment.
//     pub struct OrderSaga;
//     pub enum OrderSagaStep { ReserveInventory, ChargePayment }   // + Display, ALL, name, index
//     pub type OrderSagaStatus = SagaStatus<OrderSagaStep>;
//     pub type OrderSagaOutcome = SagaOutcome<OrderCtx, OrderSagaStep>;
//     const _: () = {
//         use not_steps::*;                      // stand-ins for paths that are not steps
//         use reserve_inventory as __SagaStep0;  // the only place each step path is named, so a
//         assert_listed::<__SagaStep0, _>(&__SagaStep0); // bad path gives one error, not one per use
//         impl Saga for OrderSaga { ... }      // `type Context = OrderCtx` checks the context
//         assert_declares_undo::<__SagaStep0>(); // every step but the last
//     };
//     impl OrderSaga { run, run_with, start, start_with, status, cancel, request, on, description }
pub(crate) fn expand(saga: &Saga) -> TokenStream {
    let rt = private(saga.args.krate.as_ref());
    let name = &saga.name;
    let vis = &saga.vis;
    let attrs = &saga.attrs;
    let ctx_ty = &saga.ctx_ty;
    let deps_ty = match &saga.deps_ty {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let step_enum = format_ident!("{}Step", name);
    let status = format_ident!("{}Status", name);
    let outcome = format_ident!("{}Outcome", name);
    let name_str = name.to_string();

    let paths: Vec<_> = saga.steps.iter().collect();
    let count = paths.len();
    let step_names: Vec<String> = paths
        .iter()
        .map(|p| syn::ext::IdentExt::unraw(Saga::step_name(p)).to_string())
        .collect();
    // Validation refused (and dropped) the steps whose variant name is not an identifier.
    let variants: Vec<Ident> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let span = Saga::step_name(p).span();
            match Saga::variant_name(p) {
                (name, true) => Ident::new(&name, span),
                (_, false) => format_ident!("Step{}", i, span = span),
            }
        })
        .collect();
    // Each alias is spanned at its step's name, so that a type error about the step (not a step
    // of this saga, says nothing about compensation) is reported there, and not on all of `saga!`.
    let aliases: Vec<Ident> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| Ident::new(&format!("__SagaStep{i}"), Saga::step_name(p).span()))
        .collect();

    // Each path is imported under its alias, next to a glob import of stand-ins with the same
    // names: a plain function has no type of its own, so its alias is the stand-in, which the
    // check reports as one error at the function's name (see `private::listed`).
    let alias_items = paths.iter().zip(&aliases).map(|(path, alias)| {
        quote_spanned! {path.span()=>
            #[allow(unused_imports)]
            use #path as #alias;
            #rt::assert_listed::<#alias, _>(&#alias);
        }
    });
    let step_defs = paths.iter().zip(&aliases).map(|(path, alias)| {
        quote_spanned!(path.span()=> #rt::StepDef::<#ctx_ty, #deps_ty>::of::<#alias>())
    });
    // The first position of each step's stage: its group's first member, or the step itself.
    let stage_start: Vec<usize> = (0..count)
        .map(|i| {
            saga.groups
                .iter()
                .find(|g| g.members.contains(&i))
                .map_or(i, |g| g.members.start)
        })
        .collect();
    // The steps of the stages before each step's: the only ones whose outputs it may take (not
    // a member of its own group, which runs at the same time).
    let positions: Vec<Ident> = (0..count).map(|i| format_ident!("__SagaAt{}", i)).collect();
    let mut runs_before = Vec::new();
    for (i, position) in positions.iter().enumerate() {
        for earlier in &aliases[..stage_start[i]] {
            runs_before.push(quote! {
                #[diagnostic::do_not_recommend]
                impl #rt::RunsBefore<#position> for #earlier {}
            });
        }
    }
    let input_asserts = paths.iter().zip(&aliases).zip(&positions).map(|((path, alias), position)| {
        quote_spanned!(path.span()=> #rt::assert_inputs_run_before::<#alias, #position>();)
    });
    // Every step but the last says what rollback does with it; when the last is in a group, a
    // sibling's failure may undo it, so it says so too.
    let last_alone = count > 0 && stage_start[count - 1] == count - 1;
    let undo_asserts = paths
        .iter()
        .zip(&aliases)
        .take(count.saturating_sub(usize::from(last_alone)))
        .map(|(path, alias)| quote_spanned!(path.span()=> #rt::assert_declares_undo::<#alias>();));
    // The members of a group run at once: each reads the context only (so that no member's
    // update is lost to another's) and is no point of no return.
    let member_asserts = saga.groups.iter().flat_map(|g| g.members.clone()).map(|i| {
        let (path, alias) = (paths[i], &aliases[i]);
        quote_spanned! {path.span()=>
            #rt::assert_reads_context_only::<#alias>();
            #rt::assert_not_pivot::<#alias>();
        }
    });
    let groups = match saga.groups.is_empty() {
        true => None,
        false => {
            let ranges = saga.groups.iter().map(|g| {
                let (start, end) = (g.members.start, g.members.end);
                quote!(#start..#end)
            });
            Some(quote! {
                const GROUPS: &'static [::core::ops::Range<usize>] = &[#(#ranges),*];
            })
        }
    };

    // Spanned at the types, so that an error about one (not a valid context, private in a public
    // saga) is reported at it.
    let context_item = quote_spanned!(ctx_ty.span()=> type Context = #ctx_ty;);
    let deps_item = match &saga.deps_ty {
        Some(ty) => quote_spanned!(ty.span()=> type Deps = #ty;),
        None => quote!(
            type Deps = ();
        ),
    };

    let best_effort = saga.args.best_effort_rollback.is_some();
    let deadline = match &saga.args.deadline {
        Some(d) => {
            let d = duration(&rt, d.value);
            quote!(#rt::Some(#d))
        }
        None => quote!(#rt::None),
    };

    let step_doc = format!("The steps of [`{name}`], in order; displayed as the step's name.");
    let status_doc = format!("The status of a [`{name}`].");
    let outcome_doc = format!("How a [`{name}`] ended.");
    let variant_docs = step_names.iter().map(|s| format!("`{s}`"));
    let methods = methods(&rt, name, ctx_ty, &deps_ty, &status, &outcome);

    quote! {
        #(#attrs)*
        #vis struct #name;

        #[doc = #step_doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        // The variants are the step functions' names, which the user chose for the functions.
        #[allow(clippy::enum_variant_names)]
        #vis enum #step_enum {
            #(
                #[doc = #variant_docs]
                #variants,
            )*
        }

        impl #step_enum {
            /// Every step, in order.
            pub const ALL: [Self; #count] = [#(Self::#variants),*];

            /// The step's name: its function's name.
            pub const fn name(self) -> &'static str {
                match self {
                    #(Self::#variants => #step_names,)*
                }
            }

            /// The step's position, from 0.
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        #[automatically_derived]
        impl ::core::fmt::Display for #step_enum {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.name())
            }
        }

        #[automatically_derived]
        impl #rt::StepEnum for #step_enum {
            const ALL: &'static [Self] = &#step_enum::ALL;

            fn index(self) -> usize {
                #step_enum::index(self)
            }

            fn name(self) -> &'static str {
                #step_enum::name(self)
            }
        }

        #[doc = #status_doc]
        #vis type #status = #rt::SagaStatus<#step_enum>;

        #[doc = #outcome_doc]
        #vis type #outcome = #rt::SagaOutcome<#ctx_ty, #step_enum>;

        #[doc(hidden)]
        #[allow(non_camel_case_types, clippy::all)]
        const _: () = {
            #[allow(unused_imports)]
            use #rt::not_steps::*;
            #(#alias_items)*

            #[automatically_derived]
            impl #rt::Saga for #name {
                #context_item
                #deps_item
                type Step = #step_enum;

                const NAME: &'static str = #name_str;

                const OPTIONS: #rt::SagaOptions = #rt::SagaOptions {
                    best_effort_rollback: #best_effort,
                    deadline: #deadline,
                };

                #groups

                fn steps() -> &'static [#rt::StepDef<#ctx_ty, #deps_ty>] {
                    static STEPS: [#rt::StepDef<#ctx_ty, #deps_ty>; #count] = [#(#step_defs),*];
                    &STEPS
                }

                fn metrics() -> &'static #rt::SagaMetrics {
                    static METRICS: #rt::OnceLock<#rt::SagaMetrics> = #rt::OnceLock::new();
                    METRICS.get_or_init(#rt::SagaMetrics::new::<Self>)
                }

                fn table() -> &'static #rt::StepTable<#ctx_ty, #deps_ty> {
                    static TABLE: #rt::OnceLock<#rt::StepTable<#ctx_ty, #deps_ty>> =
                        #rt::OnceLock::new();
                    TABLE.get_or_init(#rt::StepTable::generated::<Self>)
                }

                fn default_deps() -> #rt::Option<::std::sync::Arc<#deps_ty>> {
                    #[allow(unused_imports)]
                    use #rt::{DepsDefault as _, DepsNoDefault as _};
                    (&#rt::DepsProbe::<#deps_ty>::new()).default_deps()
                }
            }

            #(#undo_asserts)*
            #(#member_asserts)*

            #(struct #positions;)*
            #(#runs_before)*
            #(#input_asserts)*
        };

        #methods
    }
}

fn methods(
    rt: &TokenStream,
    name: &Ident,
    ctx_ty: &syn::Type,
    deps_ty: &TokenStream,
    status: &Ident,
    outcome: &Ident,
) -> TokenStream {
    let client = quote!(#rt::SagaClient::<#name>::global());
    let result = quote!(#rt::Result);
    let error = quote!(#rt::SagaError);
    let id = quote!(#rt::SagaId);
    let deps_arg = quote!(impl ::core::convert::Into<::std::sync::Arc<#deps_ty>>);
    quote! {
        impl #name {
            /// Runs the saga to a terminal state on the global in-memory engine. Needs
            /// dependencies that are `Default`; otherwise use `run_with`.
            pub async fn run(ctx: #ctx_ty) -> #result<#outcome, #error>
            where
                // Higher-ranked so that the bound is checked where `run` is called, not here.
                for<'__saga> #deps_ty: ::core::default::Default,
            {
                #client.run(ctx).await
            }

            /// Runs the saga with these dependencies to a terminal state on the global engine.
            pub async fn run_with(ctx: #ctx_ty, deps: #deps_arg) -> #result<#outcome, #error> {
                #client.run_with(ctx, deps).await
            }

            /// Records the saga on the global engine and runs it in the background; returns its id.
            pub async fn start(ctx: #ctx_ty) -> #result<#id, #error>
            where
                for<'__saga> #deps_ty: ::core::default::Default,
            {
                #client.start(ctx).await
            }

            /// Like `start`, with these dependencies.
            pub async fn start_with(ctx: #ctx_ty, deps: #deps_arg) -> #result<#id, #error> {
                #client.start_with(ctx, deps).await
            }

            /// The status of a saga of this type on the global engine.
            pub async fn status(id: #id) -> #result<#status, #error> {
                #client.status(id).await
            }

            /// Waits until a saga of this type on the global engine has ended; returns its
            /// outcome with its final context.
            pub async fn wait(id: #id) -> #result<#outcome, #error> {
                #client.wait(id).await
            }

            /// Asks a saga of this type on the global engine to stop at its next step boundary
            /// and compensate, wherever it runs.
            pub async fn cancel(id: #id) -> #result<(), #error> {
                #client.cancel(id).await
            }

            /// A run with options (id, idempotency key, deadline, dependencies) on the global
            /// engine.
            pub fn request(ctx: #ctx_ty) -> #rt::SagaRequest<#name> {
                #client.request(ctx)
            }

            /// This saga type on another engine.
            pub fn on(engine: &#rt::Engine) -> #rt::SagaClient<#name> {
                engine.saga::<#name>()
            }

            /// The saga's static description: its steps and their policies.
            pub fn description() -> #rt::SagaDescription {
                <#name as #rt::Saga>::description()
            }
        }
    }
}
