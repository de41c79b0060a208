//! Expansion of `#[saga_step]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Ident;

use super::{duration, private};
use crate::ast::{CompensationRetries, Step};

// Input:
//
//     #[saga_step(compensate = release, timeout = "5s")]
//     async fn reserve(ctx: &mut Ctx, cx: &StepCx<Deps>) -> Result<(), StepError> { ... }
//
// Output:
//
//     async fn reserve(ctx: &mut Ctx, cx: &StepCx<Deps>) -> Result<(), StepError> { ... }
//
//     // A type in the type namespace, under the function's name: `saga!` names it to reach the
//     // step's policy and function pointers (functions live in the value namespace, so the two
//     // do not clash).
//     struct reserve { _private: () }
//     impl SagaStep<Ctx, Deps> for reserve {
//         fn action(ctx, cx) { action::<Result<(), StepError>, _>(reserve(ctx, cx)) }
//         fn compensate(ctx, cx) { compensation_with::<reserve, Ctx, StepCx<Deps>, _>(release, ctx, cx) }
//         ...
//     }
//     impl DeclaresUndo for reserve {}
//
// Type errors are placed on the user's tokens by the hidden helpers' bounds: a wrong return type
// on the return type, a future that is not `Send` on the name, a compensation that does not fit
// on the `compensate` path, a bad fallback on the `fallback` path.
pub(crate) fn expand(step: &Step) -> TokenStream {
    let rt = private(step.args.krate.as_ref());
    let item = step.original;
    let name = step.name;
    let ctx_ty = step.ctx_ty;
    let args = &step.args;

    let handle = step.handle_ty.map(|ty| Handle::of(&rt, ty));
    let (impl_generics, where_clause, deps_ty) = match &handle {
        // No handle: the step fits a saga over any dependencies.
        None => (
            quote!(<__D: ::core::marker::Send + ::core::marker::Sync + 'static>),
            quote!(),
            quote!(__D),
        ),
        Some(Handle::StepCx { deps, .. }) => (quote!(), quote!(), deps.clone()),
        // An alias, or not a handle at all. The bound is higher-ranked so that it is not checked
        // where it is written: `assert_step_handle` reports a bad handle type once, at the type.
        // (It is global, so rustc still normalizes `Deps` through the impl for an alias.)
        Some(Handle::Other { ty, .. }) => (
            quote!(),
            quote!(where for<'__saga> #ty: #rt::StepHandle),
            quote!(<#ty as #rt::StepHandle>::Deps),
        ),
    };
    let cx_param = if handle.is_some() || !step.input_tys.is_empty() {
        quote!(cx)
    } else {
        quote!(_cx)
    };
    // Each output the step takes, read before the call; `read` is spanned at the parameter's
    // type, so that a type that is not an earlier step's output is reported there.
    let inputs: Vec<Ident> = (0..step.input_tys.len())
        .map(|i| format_ident!("__input{}", i))
        .collect();
    let reads = step.input_tys.iter().zip(&inputs).map(|(ty, input)| {
        let read = quote_spanned!(ty.span()=> <#ty as #rt::StepInput>::read);
        quote! {
            let #input = match #read(cx) {
                #rt::Ok(input) => input,
                #rt::Err(error) => return #rt::failed(error),
            };
        }
    });
    // The executor hands every step `&mut Ctx` (its own copy); a step that only reads it gets
    // it shared, and so does its compensation.
    let (ctx_arg, ctx_ref) = match step.ctx_mut {
        true => (quote!(ctx), quote!(&'a mut #ctx_ty)),
        false => (quote!(&*ctx), quote!(&'a #ctx_ty)),
    };
    let call_args = match &handle {
        Some(handle) => {
            let arg = handle.arg();
            quote!((#ctx_arg, #arg #(, #inputs)*))
        }
        None => quote!((#ctx_arg #(, #inputs)*)),
    };
    // Reported at the user's type, the explicit generic argument.
    let handle_check = match &handle {
        Some(Handle::Other { ty, .. }) => Some(quote! {
            const _: () = #rt::assert_step_handle::<#ty>();
        }),
        _ => None,
    };

    let output_ty = match step.output {
        syn::ReturnType::Type(_, ty) => quote!(#ty),
        syn::ReturnType::Default => quote!(()),
    };
    let infer_at_name = quote_spanned!(name.span()=> _);
    // A remote step's function builds the command a participant service carries out: its
    // attempt sends it and records the service's reply.
    let action = match args.remote {
        None => quote! {
            #(#reads)*
            #rt::action::<#output_ty, #infer_at_name>(#name #call_args)
        },
        Some(_) => quote! {
            #(#reads)*
            #rt::remote_action::<#output_ty, #infer_at_name>(#name #call_args)
        },
    };

    let (compensate_params, compensate_body) = match &args.compensate {
        Some(path) => {
            // Only the inferred `_` (the compensation's type, whose bound fails on a mismatch)
            // carries the user's span: `ctx` and `cx` keep the macro's, so that they resolve to
            // the parameters even when `#[saga_step]` is written inside a `macro_rules!`.
            let infer = quote_spanned!(last_segment_span(path)=> _);
            let body = match &handle {
                Some(handle) => {
                    let ty = handle.ty();
                    let arg = handle.arg();
                    quote! {
                        #rt::compensation_with::<#name, #ctx_ref, #ty, _, #infer>(
                            #path, #ctx_arg, #arg, cx.recorded_output(),
                        )
                    }
                }
                None => quote! {
                    #rt::compensation::<#name, #ctx_ref, _, #infer>(
                        #path, #ctx_arg, cx.recorded_output(),
                    )
                },
            };
            (
                quote!(ctx: &'a mut #ctx_ty, cx: &'a #rt::StepCx<#deps_ty>),
                body,
            )
        }
        None => (
            quote!(_ctx: &'a mut #ctx_ty, _cx: &'a #rt::StepCx<#deps_ty>),
            quote!(#rt::no_compensation()),
        ),
    };

    // rustc reports an unmet bound of an explicit generic argument at the argument: here, the
    // user's own `fallback` path.
    // A fallback stands in for its step: when the step says what rollback does with it, so must
    // the fallback.
    let undo = args.compensate.is_some() || args.pivot.is_some() || args.nothing_to_undo.is_some();
    // A step that only reads the context may run in a parallel group: so must its fallback.
    let checked = match (undo, step.ctx_mut) {
        (false, true) => quote!(fallback),
        (true, true) => quote!(fallback_declaring_undo),
        (false, false) => quote!(fallback_reading),
        (true, false) => quote!(fallback_reading_declaring_undo),
    };
    // The fallback's path is imported next to stand-ins, as `saga!` imports its steps, so that
    // a plain function named there is one error saying what it lacks (see `private::listed`).
    let fallback = match &args.fallback {
        Some(path) => {
            let alias = Ident::new("__SagaStep0", path.span());
            quote_spanned! {path.span()=> {
                #[allow(unused_imports)]
                use #rt::not_steps::*;
                #[allow(unused_imports)]
                use #path as #alias;
                #rt::assert_listed::<#alias, _>(&#alias);
                #rt::#checked::<#alias, #name, #ctx_ty, #deps_ty>()
            }}
        }
        None => quote!(#rt::None),
    };

    let description = description(&rt, step, &output_ty);
    let declares_undo = undo.then(|| {
        quote! {
            #[automatically_derived]
            impl #rt::DeclaresUndo for #name {}
            #[automatically_derived]
            impl #rt::FallbackDeclaresUndo for #name {}
        }
    });
    // What a member of a parallel group must be (`saga!` asks it of each member): reading the
    // context only (its fallback is held to that above), and no pivot.
    let reads_only = (!step.ctx_mut).then(|| {
        quote! {
            #[automatically_derived]
            impl #rt::ReadsContextOnly for #name {}
            #[automatically_derived]
            impl #rt::FallbackReadsContextOnly for #name {}
        }
    });
    let not_pivot = args.pivot.is_none().then(|| {
        quote! {
            #[automatically_derived]
            impl #rt::NotPivot for #name {}
        }
    });
    let marker = marker(&rt, item);
    let name_str = syn::ext::IdentExt::unraw(name).to_string();
    // Spanned at the return type, so that one that is not `Result<T, StepError>` is reported
    // there.
    let output_span = match step.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => name.span(),
    };
    // `StepResult` takes any `Result<T, E>` apart: `action` alone checks that the error is a
    // `StepError` and `T` can be recorded, so that a mistake there is reported once.
    let output = match args.remote {
        None => quote_spanned!(output_span=> <#output_ty as #rt::StepResult>::Value),
        Some(_) => quote_spanned!(output_span=>
            <<#output_ty as #rt::StepResult>::Value as #rt::Command>::Reply
        ),
    };

    // Every step whose output it takes runs before the step at position `__P` of a saga:
    // `saga!` asks this of each step it lists. Spanned at the parameters, for the note that
    // points at them. (A fallback's own inputs are not checked here: naming the fallback in a
    // bound would report a fallback that is not a step twice.)
    let runs_before = step.input_tys.iter().map(|ty| {
        let span = ty.span();
        let bound = respan(quote!(#rt::RunsBefore<__P>), span);
        quote_spanned!(span=> <#ty as #rt::StepInput>::From: #bound,)
    });

    quote! {
        #item
        #marker

        #[automatically_derived]
        impl<__P> #rt::InputsRunBefore<__P> for #name
        where
            #(#runs_before)*
        {
        }

        #[automatically_derived]
        impl #rt::NamedStep for #name {
            const NAME: &'static str = #name_str;
            type Output = #output;
        }

        #[automatically_derived]
        impl #impl_generics #rt::SagaStep<#ctx_ty, #deps_ty> for #name #where_clause {
            const DESCRIPTION: #rt::StepDescription = #description;

            const FALLBACK: #rt::Option<fn() -> #rt::StepDef<#ctx_ty, #deps_ty>> = #fallback;

            fn action<'a>(
                ctx: &'a mut #ctx_ty,
                #cx_param: &'a #rt::StepCx<#deps_ty>,
            ) -> #rt::StepFuture<'a> {
                #action
            }

            fn compensate<'a>(#compensate_params) -> #rt::StepFuture<'a> {
                #compensate_body
            }
        }

        #declares_undo
        #reads_only
        #not_pivot
        #handle_check
    }
}

/// The step handle parameter `&H`.
enum Handle<'a> {
    /// Written `StepCx` or `StepCx<D>`: the dependencies type is read from the tokens.
    StepCx {
        /// `StepCx<D>` as written.
        ty: &'a syn::Type,
        /// `D`, or `()` when omitted.
        deps: TokenStream,
    },
    /// Anything else: an alias of `StepCx<D>`, whose `D` comes from `StepHandle`, or a mistake,
    /// which `assert_step_handle` reports.
    Other {
        /// The type as written.
        ty: &'a syn::Type,
        /// How to turn the executor's `&StepCx<D>` into `&H`.
        arg: TokenStream,
    },
}

impl<'a> Handle<'a> {
    fn of(rt: &TokenStream, ty: &'a syn::Type) -> Self {
        if let syn::Type::Path(syn::TypePath { qself: None, path }) = ty {
            let last = path.segments.last().expect("a parsed path has a segment");
            if last.ident == "StepCx" {
                match &last.arguments {
                    syn::PathArguments::None => {
                        return Handle::StepCx {
                            ty,
                            deps: quote!(()),
                        }
                    }
                    syn::PathArguments::AngleBracketed(generics) if generics.args.len() == 1 => {
                        if let Some(syn::GenericArgument::Type(deps)) = generics.args.first() {
                            return Handle::StepCx {
                                ty,
                                deps: deps.to_token_stream(),
                            };
                        }
                    }
                    _ => {}
                }
            }
        }
        Handle::Other {
            ty,
            arg: quote!(<#ty as #rt::StepHandle>::from_cx(cx)),
        }
    }

    fn ty(&self) -> &'a syn::Type {
        match self {
            Handle::StepCx { ty, .. } | Handle::Other { ty, .. } => ty,
        }
    }

    /// The handle argument of a call to the step or its compensation.
    fn arg(&self) -> TokenStream {
        match self {
            Handle::StepCx { .. } => quote!(cx),
            Handle::Other { arg, .. } => arg.clone(),
        }
    }
}

/// The same tokens, all at `span` (tokens interpolated into `quote_spanned!` keep their own).
fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = proc_macro2::TokenTree::Group(inner);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}

/// Where to report a type error about a path: its last segment, the function's name. (Spans
/// cannot be joined on stable, so a whole `a::b` cannot be underlined from generated code.)
fn last_segment_span(path: &syn::Path) -> proc_macro2::Span {
    path.segments
        .last()
        .expect("a parsed path has a segment")
        .ident
        .span()
}

/// The hidden type sharing the function's name (see the comment on [`expand`]).
pub(crate) fn marker(rt: &TokenStream, item: &syn::ItemFn) -> TokenStream {
    let vis = &item.vis;
    let name = &item.sig.ident;
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {
            _private: (),
        }

        #[automatically_derived]
        impl #rt::Declared for #name {}
    }
}

fn description(rt: &TokenStream, step: &Step, output_ty: &TokenStream) -> TokenStream {
    let args = &step.args;
    // A raw identifier (`r#type`) is the step `type` in events, statuses and the store.
    let name = syn::ext::IdentExt::unraw(step.name).to_string();
    let mut fields = Vec::new();
    if let Some(timeout) = &args.timeout {
        let d = duration(rt, timeout.value);
        fields.push(quote!(timeout: #rt::Some(#d)));
    }
    if let Some(retries) = &args.retries {
        let n = retries.value;
        fields.push(quote!(retries: #n));
    }
    if let Some(backoff) = &args.backoff {
        let d = duration(rt, backoff.value);
        fields.push(quote!(backoff: #d));
    }
    let undo = if args.compensate.is_some() {
        quote!(Compensate)
    } else if args.pivot.is_some() {
        quote!(Pivot)
    } else if args.nothing_to_undo.is_some() {
        quote!(NothingToUndo)
    } else {
        quote!(Unspecified)
    };
    fields.push(quote!(undo: #rt::Undo::#undo));
    if let Some(retries) = &args.compensation_retries {
        let value = match retries.value {
            CompensationRetries::Limited(n) => quote!(#rt::CompensationRetries::Limited(#n)),
            CompensationRetries::Forever => quote!(#rt::CompensationRetries::Forever),
        };
        fields.push(quote!(compensation_retries: #value));
    }
    if args.compensate_on_timeout.is_some() {
        fields.push(quote!(compensate_on_timeout: true));
    }
    let compensation = path_name(rt, args.compensate.as_ref());
    let fallback = path_name(rt, args.fallback.as_ref());
    let inputs = step
        .input_tys
        .iter()
        .map(|ty| quote!(<#ty as #rt::StepInput>::NAME));
    let (output, remote) = match args.remote {
        None => (
            match output_type(step.output) {
                Some(text) => quote!(#rt::Some(#text)),
                None => quote!(#rt::None),
            },
            quote!(#rt::None),
        ),
        Some(_) => {
            let command = quote!(<#output_ty as #rt::StepResult>::Value);
            let reply = output_type(step.output).map(|text| format!("{text}::Reply"));
            (
                match reply {
                    Some(text) => quote!(#rt::Some(#text)),
                    None => quote!(#rt::None),
                },
                quote!(#rt::Some(#rt::RemoteTarget {
                    service: <#command as #rt::Command>::SERVICE,
                    action: <#command as #rt::Command>::ACTION,
                })),
            )
        }
    };
    quote! {
        #rt::StepDescription {
            name: #name,
            policy: #rt::StepPolicy {
                #(#fields,)*
                ..#rt::StepPolicy::DEFAULT
            },
            compensation: #compensation,
            fallback: #fallback,
            inputs: &[#(#inputs),*],
            output: #output,
            remote: #remote,
        }
    }
}

/// `T` of a return type written `Result<T, E>`, as text, unless it is `()`: what the description
/// shows of the step's output.
fn output_type(output: &syn::ReturnType) -> Option<String> {
    let syn::ReturnType::Type(_, ty) = output else {
        return None;
    };
    let syn::Type::Path(path) = &**ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(syn::Type::Tuple(unit)) if unit.elems.is_empty() => None,
        syn::GenericArgument::Type(ty) => Some(ty.to_token_stream().to_string().replace(' ', "")),
        _ => None,
    }
}

/// A path as the string the description shows, e.g. `Some("inventory::release")`.
fn path_name(rt: &TokenStream, path: Option<&syn::Path>) -> TokenStream {
    match path {
        Some(path) => {
            let text = path.to_token_stream().to_string().replace(' ', "");
            quote!(#rt::Some(#text))
        }
        None => quote!(#rt::None),
    }
}
