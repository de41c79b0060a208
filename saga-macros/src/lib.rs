//! Procedural macros of `saga-runtime`: `#[saga_step]` and `saga!`.
//!
//! Depend on `saga-runtime`, which re-exports these; the code they generate refers to it.

#![allow(clippy::needless_pass_by_value)]

mod ast;
mod attr;
mod ctxt;
mod duration;
mod expand;
mod fallback;
mod flow;
mod handler;
mod parse;
mod symbol;
mod validate;

#[cfg(test)]
mod snapshot;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;

/// Marks an `async fn` as a saga step. See the `saga-runtime` crate documentation.
#[proc_macro_attribute]
pub fn saga_step(args: TokenStream, input: TokenStream) -> TokenStream {
    step(args.into(), input.into()).into()
}

/// Marks an `async fn` as a handler of a choreographed saga. See the `saga-runtime` crate
/// documentation.
#[proc_macro_attribute]
pub fn saga_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    handler::expand(args.into(), input.into()).into()
}

/// Declares a choreographed saga's flow: its start and end events and its handlers by service.
/// See the `saga-runtime` crate documentation.
#[proc_macro]
pub fn choreography(input: TokenStream) -> TokenStream {
    flow::expand(input.into()).into()
}

/// Declares a saga: its name, context and dependency types, and its steps in order. See the
/// `saga-runtime` crate documentation.
#[proc_macro]
pub fn saga(input: TokenStream) -> TokenStream {
    saga_impl(input.into()).into()
}

/// `#[saga_step]` on proc-macro2 tokens: parse, validate, expand.
pub(crate) fn step(args: TokenStream2, input: TokenStream2) -> TokenStream2 {
    let item: syn::ItemFn = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => return fallback::not_a_function(input),
    };
    let cx = ctxt::Ctxt::new();
    let step = ast::Step::from_syn(&cx, args, &item);
    if let Some(step) = &step {
        validate::step(&cx, step);
    }
    let output = match (cx.check(), step) {
        (Ok(()), Some(step)) => expand::step::expand(&step),
        (Err(errors), _) => fallback::step(&item, errors),
        (Ok(()), None) => unreachable!("a step that failed to parse recorded an error"),
    };
    expand::debug(&item.sig.ident.to_string(), &output);
    output
}

/// `saga!` on proc-macro2 tokens: parse, validate, expand.
pub(crate) fn saga_impl(input: TokenStream2) -> TokenStream2 {
    let cx = ctxt::Ctxt::new();
    let Some(mut saga) = ast::Saga::from_syn(&cx, input) else {
        return cx
            .check()
            .expect_err("a saga that failed to parse recorded an error")
            .to_compile_error();
    };
    validate::saga(&cx, &saga);
    let errors = cx.check().err().map(|e| e.to_compile_error());
    if errors.is_some() {
        // Expand what is valid, so that uses of the saga elsewhere still type-check (with its
        // steps in sequence: the groups' positions no longer hold).
        dedup_steps(&mut saga);
        saga.groups.clear();
    }
    let output = expand::saga::expand(&saga);
    expand::debug(&saga.name.to_string(), &output);
    quote::quote!(#errors #output)
}

fn dedup_steps(saga: &mut ast::Saga) {
    let mut seen = std::collections::HashSet::new();
    let steps = std::mem::take(&mut saga.steps);
    saga.steps = steps
        .into_iter()
        .filter(|path| match ast::Saga::variant_name(path) {
            (variant, true) => seen.insert(variant),
            (_, false) => false,
        })
        .collect();
}
