//! Expansion of `#[saga_step]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

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
//     impl SagaStep<Ctx, <StepCx<Deps> as StepHandle>::Deps> for reserve { ... }
//     impl DeclaresUndo for reserve {}
pub(crate) fn expand(step: &Step) -> TokenStream {
    let rt = private(None);
    let item = step.original;
    let name = step.name;
    let ctx_ty = step.ctx_ty;
    let args = &step.args;

    let (impl_generics, deps_ty, call) = match step.handle_ty {
        Some(handle) => (
            quote!(),
            quote_spanned!(handle.span()=> <#handle as #rt::StepHandle>::Deps),
            quote!((ctx, cx)),
        ),
        None => (
            quote!(<__D: ::core::marker::Send + ::core::marker::Sync + 'static>),
            quote!(__D),
            quote!((ctx)),
        ),
    };
    let cx_param = if step.handle_ty.is_some() {
        quote!(cx)
    } else {
        quote!(_cx)
    };

    // Type errors about what the function returns (or about its future not being `Send`) are
    // placed on its return type.
    let output_span = match step.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => name.span(),
    };
    let action = quote_spanned!(output_span=> #rt::Box::pin(#name #call));

    let (compensate_params, compensate_body) = match &args.compensate {
        Some(path) => (
            quote!(ctx: &'a mut #ctx_ty, #cx_param: &'a #rt::StepCx<#deps_ty>),
            quote_spanned!(path.span()=> #rt::Box::pin(#path #call)),
        ),
        None => (
            quote!(_ctx: &'a mut #ctx_ty, _cx: &'a #rt::StepCx<#deps_ty>),
            quote!(#rt::no_compensation()),
        ),
    };

    let fallback = match &args.fallback {
        Some(path) => {
            let of = quote_spanned!(path.span()=> #rt::StepDef::<#ctx_ty, #deps_ty>::of::<#path>);
            quote!(#rt::Some(#of))
        }
        None => quote!(#rt::None),
    };

    let description = description(&rt, step);
    let declares_undo = (args.compensate.is_some()
        || args.pivot.is_some()
        || args.nothing_to_undo.is_some())
    .then(|| {
        quote! {
            #[automatically_derived]
            impl #rt::DeclaresUndo for #name {}
        }
    });
    let marker = marker(item);

    quote! {
        #item
        #marker

        #[automatically_derived]
        impl #impl_generics #rt::SagaStep<#ctx_ty, #deps_ty> for #name {
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
    }
}

/// The hidden type sharing the function's name (see the comment on [`expand`]).
pub(crate) fn marker(item: &syn::ItemFn) -> TokenStream {
    let vis = &item.vis;
    let name = &item.sig.ident;
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #name {
            _private: (),
        }
    }
}

fn description(rt: &TokenStream, step: &Step) -> TokenStream {
    let args = &step.args;
    let name = step.name.to_string();
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
    quote! {
        #rt::StepDescription {
            name: #name,
            policy: #rt::StepPolicy {
                #(#fields,)*
                ..#rt::StepPolicy::DEFAULT
            },
            compensation: #compensation,
            fallback: #fallback,
        }
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
