//! `#[saga_handler]`: a handler of a choreographed saga.
//!
//! Input:
//!
//! ```text
//! #[saga_handler(compensate = release, retries = 5, backoff = "200ms", timeout = "2s")]
//! async fn reserve(event: OrderPlaced, cx: &HandlerCx<Stock>) -> Result<StockReserved, StepError> { .. }
//! ```
//!
//! Output: the function, and under its name in the type namespace a hidden type implementing
//! `Handler` (its event types from the signature, its dependencies from the handle's type), plus
//! `HandlerDeclaresUndo` when it says how its work is undone.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ctxt::Ctxt;
use crate::expand::{duration, private};

/// What the attribute says.
#[derive(Default)]
struct Args {
    compensate: Option<syn::Path>,
    nothing_to_undo: Option<proc_macro2::Span>,
    retries: Option<u32>,
    backoff: Option<std::time::Duration>,
    timeout: Option<std::time::Duration>,
    krate: Option<syn::Path>,
}

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let item: syn::ItemFn = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let error = syn::Error::new_spanned(
                &input,
                "#[saga_handler] goes on an `async fn` that takes an event and `&HandlerCx<Deps>`",
            );
            let error = error.to_compile_error();
            return quote!(#input #error);
        }
    };
    let args = parse_args(&cx, args);
    let parts = signature(&cx, &item);
    if args.compensate.is_some() {
        if let Some(span) = args.nothing_to_undo {
            cx.error_at(span, "a handler with a compensation has something to undo");
        }
    }
    if let (Some(parts), Some(key)) = (&parts, args.event_only()) {
        if parts.command {
            cx.error_spanned_by(
                item.sig.fn_token,
                format!(
                    "`{key}` is for an event's handler; a command's handler is retried, timed and \
                     undone by the step that sends the command"
                ),
            );
        }
    }
    match (cx.check(), parts) {
        (Ok(()), Some(parts)) => tokens(&item, &args, parts),
        (Err(errors), _) => {
            let errors = errors.to_compile_error();
            quote!(#item #errors)
        }
        (Ok(()), None) => unreachable!("a signature that failed to parse recorded an error"),
    }
}

impl Args {
    /// The first key given that only an event's handler takes.
    fn event_only(&self) -> Option<&'static str> {
        [
            (self.compensate.is_some(), "compensate"),
            (self.nothing_to_undo.is_some(), "nothing_to_undo"),
            (self.retries.is_some(), "retries"),
            (self.backoff.is_some(), "backoff"),
            (self.timeout.is_some(), "timeout"),
        ]
        .into_iter()
        .find_map(|(given, key)| given.then_some(key))
    }
}

fn parse_args(cx: &Ctxt, args: TokenStream) -> Args {
    let mut parsed = Args::default();
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "compensate" => parsed.compensate = Some(meta.value()?.parse()?),
            "nothing_to_undo" => parsed.nothing_to_undo = Some(meta.path.span()),
            "retries" => {
                let value: syn::LitInt = meta.value()?.parse()?;
                parsed.retries = Some(value.base10_parse()?);
            }
            "backoff" | "timeout" => {
                let value: syn::LitStr = meta.value()?.parse()?;
                let parsed_value = crate::duration::parse(&value.value())
                    .map_err(|message| syn::Error::new(value.span(), message))?;
                if key == "timeout" && parsed_value.is_zero() {
                    return Err(syn::Error::new(
                        value.span(),
                        "a timeout of zero never lets the handler run",
                    ));
                }
                match key.as_str() {
                    "backoff" => parsed.backoff = Some(parsed_value),
                    _ => parsed.timeout = Some(parsed_value),
                }
            }
            "crate" => {
                let value: syn::LitStr = meta.value()?.parse()?;
                parsed.krate = Some(value.parse()?);
            }
            _ => {
                return Err(meta.error(format!(
                    "unknown `#[saga_handler]` key `{key}`; expected `compensate`, \
                     `nothing_to_undo`, `retries`, `backoff`, `timeout` or `crate`"
                )))
            }
        }
        Ok(())
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(error);
    }
    parsed
}

/// The types a handler's signature gives: its event (or command), its dependencies and its
/// return type, and which kind of handler it is.
struct Parts<'a> {
    on: &'a syn::Type,
    deps: syn::Type,
    output: &'a syn::Type,
    command: bool,
}

fn signature<'a>(cx: &Ctxt, item: &'a syn::ItemFn) -> Option<Parts<'a>> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(sig.fn_token, "a handler is an `async fn`");
    }
    let params: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            syn::FnArg::Typed(typed) => Some(typed),
            syn::FnArg::Receiver(receiver) => {
                cx.error_spanned_by(receiver, "a handler is a free function, not a method");
                None
            }
        })
        .collect();
    let [event, handle] = params.as_slice() else {
        cx.error_spanned_by(
            &sig.inputs,
            "a handler takes two parameters: the event, and `&HandlerCx<Deps>`",
        );
        return None;
    };
    let (deps, command) = match (handler_deps(&handle.ty), participant_deps(&handle.ty)) {
        (Some(deps), _) => (deps, false),
        (None, Some(deps)) => (deps, true),
        (None, None) => {
            cx.error_spanned_by(
                &handle.ty,
                "the second parameter of a handler is `&HandlerCx<Deps>` (an event's handler) \
                 or `ParticipantCx<Deps>` (a command's)",
            );
            return None;
        }
    };
    let syn::ReturnType::Type(_, output) = &sig.output else {
        cx.error_spanned_by(
            &sig.ident,
            "a handler returns `Result<NextEvent, StepError>`",
        );
        return None;
    };
    Some(Parts {
        on: &event.ty,
        deps,
        output,
        command,
    })
}

/// `D` of `&HandlerCx<D>`.
fn handler_deps(ty: &syn::Type) -> Option<syn::Type> {
    let syn::Type::Reference(reference) = ty else {
        return None;
    };
    generic_of(&reference.elem, "HandlerCx")
}

/// `D` of `ParticipantCx<D>`.
fn participant_deps(ty: &syn::Type) -> Option<syn::Type> {
    generic_of(ty, "ParticipantCx")
}

/// `D` of `{name}<D>`.
fn generic_of(ty: &syn::Type, name: &str) -> Option<syn::Type> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(deps) if args.args.len() == 1 => Some(deps.clone()),
        _ => None,
    }
}

fn tokens(item: &syn::ItemFn, args: &Args, parts: Parts<'_>) -> TokenStream {
    let rt = private(args.krate.as_ref());
    let name = &item.sig.ident;
    let vis = &item.vis;
    let name_str = syn::ext::IdentExt::unraw(name).to_string();
    let Parts {
        on,
        deps,
        output,
        command,
    } = parts;
    if command {
        return command_tokens(item, &rt, on, &deps, output);
    }
    let emits = quote_spanned!(output.span()=> <#output as #rt::StepResult>::Value);
    // Spanned at the return type, so that an error type that is not `StepError` is reported
    // there.
    let run = quote_spanned!(output.span()=> #rt::handler_run(#name(event, cx)));
    let undo = args.compensate.is_some();
    let retries = args.retries.unwrap_or(3);
    let backoff = duration(
        &rt,
        args.backoff
            .unwrap_or(std::time::Duration::from_millis(100)),
    );
    let timeout = match args.timeout {
        Some(limit) => {
            let limit = duration(&rt, limit);
            quote!(#rt::Some(#limit))
        }
        None => quote!(#rt::None),
    };
    let compensate = match &args.compensate {
        Some(path) => quote_spanned! {path.span()=>
            #rt::handler_compensation(#path, event, emitted, cx)
        },
        None => quote!(#rt::handler_nothing_to_undo()),
    };
    let declares = (undo || args.nothing_to_undo.is_some()).then(|| {
        quote! {
            #[automatically_derived]
            impl #rt::HandlerDeclaresUndo for #name {}
        }
    });
    quote! {
        #item

        #[allow(non_camel_case_types)]
        #[doc(hidden)]
        #vis struct #name {
            _private: (),
        }

        #[automatically_derived]
        impl #rt::Handler for #name {
            const NAME: &'static str = #name_str;
            const UNDO: bool = #undo;
            const POLICY: #rt::HandlerPolicy = #rt::HandlerPolicy::new(#retries, #backoff, #timeout);
            type Deps = #deps;
            type On = #on;
            type Emits = #emits;

            fn handle(
                event: Self::On,
                cx: &#rt::HandlerCx<Self::Deps>,
            ) -> #rt::HandlerFuture<'_, Self::Emits> {
                #run
            }

            #[allow(unused_variables)]
            fn compensate(
                event: Self::On,
                emitted: Self::Emits,
                cx: &#rt::HandlerCx<Self::Deps>,
            ) -> #rt::HandlerFuture<'_, ()> {
                #compensate
            }
        }

        #declares
    }
}

/// A handler of a participant service: the function, and the hidden type implementing
/// `CommandHandler`.
fn command_tokens(
    item: &syn::ItemFn,
    rt: &TokenStream,
    command: &syn::Type,
    deps: &syn::Type,
    output: &syn::Type,
) -> TokenStream {
    let name = &item.sig.ident;
    let vis = &item.vis;
    // Spanned at the return type, so that one that is not `Result<C::Reply, StepError>` is
    // reported there.
    let run =
        quote_spanned!(output.span()=> #rt::command_run::<Self::Command, _>(#name(command, cx)));
    quote! {
        #item

        #[allow(non_camel_case_types)]
        #[doc(hidden)]
        #vis struct #name {
            _private: (),
        }

        #[automatically_derived]
        impl #rt::CommandHandler for #name {
            type Command = #command;
            type Deps = #deps;

            fn handle(
                command: Self::Command,
                cx: #rt::ParticipantCx<Self::Deps>,
            ) -> #rt::HandlerFuture<'static, <Self::Command as #rt::Command>::Reply> {
                #run
            }
        }
    }
}
