//! Building the IR from syntax: the `saga!` grammar and the shape of a `#[saga_step]` function.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{braced, parenthesized, Attribute, FnArg, ItemFn, Token, Type};

use crate::ast::{Group, Saga, SagaArgs, Step};
use crate::attr;
use crate::ctxt::Ctxt;

// Input:
//
//     /// Docs.
//     #[saga(best_effort_rollback)]
//     pub OrderSaga(OrderCtx, Services) {
//         reserve_inventory,
//         charge_payment,
//     }
impl Parse for Saga {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let name: syn::Ident = input.parse()?;
        let types;
        let paren = parenthesized!(types in input);
        let types: Punctuated<Type, Token![,]> = types.parse_terminated(Type::parse, Token![,])?;
        let mut types = types.into_pairs().map(|p| p.into_value());
        let ctx_ty = types.next().ok_or_else(|| {
            syn::Error::new(
                paren.span.join(),
                format!("expected the context type: `{name}(Ctx)` or `{name}(Ctx, Deps)`"),
            )
        })?;
        let deps_ty = types.next();
        if let Some(extra) = types.next() {
            return Err(syn::Error::new_spanned(
                extra,
                "a saga has a context type and, optionally, a dependencies type: `Name(Ctx, Deps)`",
            ));
        }
        let list;
        let brace = braced!(list in input);
        let mut steps = Vec::new();
        let mut groups = Vec::new();
        for entry in list.parse_terminated(Entry::parse, Token![,])? {
            match entry {
                Entry::Step(path) => steps.push(path),
                Entry::Group(members) => {
                    let start = steps.len();
                    steps.extend(members);
                    groups.push(Group {
                        members: start..steps.len(),
                    });
                }
            }
        }
        if !input.is_empty() {
            return Err(input.error("expected the end of `saga!`; one saga per invocation"));
        }
        Ok(Saga {
            attrs,
            args: SagaArgs::default(),
            vis,
            name,
            ctx_ty,
            deps_ty,
            steps,
            groups,
            brace_span: brace.span.join(),
        })
    }
}

/// One entry of `saga!`'s list: a step, or a parallel group of steps.
enum Entry {
    Step(syn::Path),
    Group(Vec<syn::Path>),
}

// `reserve_inventory`, `inventory::reserve`, or `parallel(book_flight, book_hotel)`.
impl Parse for Entry {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if !is_group(input) {
            return syn::Path::parse_mod_style(input).map(Entry::Step);
        }
        input.parse::<syn::Ident>()?;
        let list;
        let paren = parenthesized!(list in input);
        let mut members = Vec::new();
        while !list.is_empty() {
            if is_group(&list) {
                let nested: syn::Ident = list.parse()?;
                return Err(syn::Error::new(
                    nested.span(),
                    "parallel groups cannot be nested: list the steps of the inner group in the outer one",
                ));
            }
            members.push(syn::Path::parse_mod_style(&list)?);
            if list.is_empty() {
                break;
            }
            list.parse::<Token![,]>()?;
        }
        if members.is_empty() {
            return Err(syn::Error::new(
                paren.span.join(),
                "a parallel group needs at least one step: `parallel(book_flight, book_hotel)`",
            ));
        }
        Ok(Entry::Group(members))
    }
}

/// Whether the input starts with a parallel group: `parallel(`.
fn is_group(input: ParseStream) -> bool {
    input
        .fork()
        .parse::<syn::Ident>()
        .is_ok_and(|word| word == "parallel")
        && input.peek2(syn::token::Paren)
}

impl Saga {
    /// Parses `saga!`'s input and its `#[saga(...)]` options.
    pub(crate) fn from_syn(cx: &Ctxt, input: TokenStream) -> Option<Saga> {
        let mut saga: Saga = match syn::parse2(input) {
            Ok(saga) => saga,
            Err(error) => {
                cx.syn_error(error);
                return None;
            }
        };
        let (options, attrs): (Vec<_>, Vec<_>) = saga
            .attrs
            .drain(..)
            .partition(|a| a.path().is_ident("saga"));
        saga.attrs = attrs;
        saga.args = attr::saga_args(cx, &options);
        Some(saga)
    }
}

impl<'a> Step<'a> {
    /// Reads a `#[saga_step]` function's shape: `async fn name(ctx: &mut Ctx[, cx: &StepCx<D>])`.
    /// Returns `None` (with errors recorded) when the shape is wrong.
    pub(crate) fn from_syn(cx: &Ctxt, args: TokenStream, item: &'a ItemFn) -> Option<Step<'a>> {
        let args = attr::step_args(cx, args);
        let sig = &item.sig;
        if sig.asyncness.is_none() {
            cx.error_spanned_by(sig.fn_token, "a saga step must be an `async fn`");
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            cx.error_spanned_by(&sig.generics, "a saga step cannot be generic");
        }
        if let Some(variadic) = &sig.variadic {
            cx.error_spanned_by(variadic, "a saga step cannot be variadic");
        }
        if matches!(sig.output, syn::ReturnType::Default) {
            cx.error_spanned_by(
                &sig.ident,
                "a saga step returns `Result<(), StepError>`; add `-> Result<(), StepError>`",
            );
        }
        if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
            // Inside an `impl`: the rest of the signature says nothing more worth reporting.
            cx.error_spanned_by(
                receiver,
                "a saga step is a free function, not a method; move it out of the `impl`",
            );
            return None;
        }
        let mut inputs = sig.inputs.iter();
        let ctx_ty = match inputs.next() {
            None => {
                cx.error_at(
                    sig.paren_token.span.join(),
                    "a saga step takes the saga context: `(ctx: &mut Ctx)` or `(ctx: &mut Ctx, cx: &StepCx<Deps>)`",
                );
                None
            }
            // Reported above.
            Some(FnArg::Receiver(_)) => None,
            Some(FnArg::Typed(arg)) => match &*arg.ty {
                Type::Reference(r) => Some((&*r.elem, r.mutability.is_some())),
                other => {
                    cx.error_spanned_by(
                        other,
                        "the first parameter of a saga step is the context, by reference: `&mut Ctx`, or `&Ctx` for a step that only reads it",
                    );
                    None
                }
            },
        };
        // After the context: the step handle, if the next parameter is a shared reference,
        // then outputs of earlier steps, by value.
        let mut handle_ty = None;
        let mut input_tys = Vec::new();
        let mut bad = false;
        for (i, arg) in inputs.enumerate() {
            let arg = match arg {
                FnArg::Typed(arg) => arg,
                FnArg::Receiver(receiver) => {
                    cx.error_spanned_by(receiver, "a saga step is a free function, not a method");
                    bad = true;
                    continue;
                }
            };
            match &*arg.ty {
                Type::Reference(r) if i == 0 && r.mutability.is_none() => {
                    handle_ty = Some(&*r.elem)
                }
                ty if i == 0 && names_step_cx(ty) => {
                    cx.error_spanned_by(
                        ty,
                        "the second parameter of a saga step is the step handle, by shared reference: `&StepCx<Deps>`",
                    );
                    bad = true;
                }
                Type::Reference(r) if i == 0 => {
                    cx.error_spanned_by(
                        r,
                        "the second parameter of a saga step is the step handle, by shared reference: `&StepCx<Deps>`",
                    );
                    bad = true;
                }
                Type::Reference(r) => {
                    cx.error_spanned_by(
                        r,
                        "an earlier step's output is taken by value: `Output<step>`",
                    );
                    bad = true;
                }
                ty if names_output(ty) => input_tys.push(ty),
                ty => {
                    cx.error_spanned_by(
                        ty,
                        "a saga step's parameters after the context are the step handle \
                         (`&StepCx<Deps>`) and outputs of earlier steps (`Output<step>`)",
                    );
                    bad = true;
                }
            }
        }
        let (ctx_ty, ctx_mut) = ctx_ty?;
        if bad {
            return None;
        }
        Some(Step {
            original: item,
            name: &sig.ident,
            ctx_ty,
            ctx_mut,
            handle_ty,
            input_tys,
            output: &sig.output,
            args,
        })
    }
}

/// Whether a type is written `Output<..>`: an earlier step's output.
fn names_output(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path.path.segments.last().is_some_and(|segment| {
            segment.ident == "Output"
                && matches!(segment.arguments, syn::PathArguments::AngleBracketed(_))
        }),
        _ => false,
    }
}

/// Whether a type is written `StepCx` or `StepCx<..>` (a handle taken by value by mistake).
fn names_step_cx(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "StepCx"),
        _ => false,
    }
}
