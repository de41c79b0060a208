//! `choreography!`: a choreographed saga's flow.
//!
//! Input:
//!
//! ```text
//! choreography! {
//!     /// Orders.
//!     pub OrderFlow(OrderPlaced => OrderShipped) {
//!         inventory: reserve,
//!         payments: charge,
//!         shipping: ship,
//!     }
//! }
//! ```
//!
//! Output: `struct OrderFlow` implementing `Choreography` (its handlers listed with their
//! services), `OrderFlow::start`, `OrderFlow::status`, one function per service returning its
//! `FlowService`, and compile-time checks at each handler's name: it says how its work is undone,
//! takes the start or an event a listed handler emits, emits the end or an event a listed handler
//! takes, and is listed once.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{braced, parenthesized, Attribute, Ident, Path, Token, Type, Visibility};

use crate::expand::private;

struct Flow {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    start: Type,
    end: Type,
    entries: Vec<(Ident, Path)>,
    brace: Span,
}

impl Parse for Flow {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let name: Ident = input.parse()?;
        let events;
        parenthesized!(events in input);
        let start: Type = events.parse()?;
        events.parse::<Token![=>]>()?;
        let end: Type = events.parse()?;
        let body;
        let brace = braced!(body in input);
        let mut entries = Vec::new();
        while !body.is_empty() {
            let service: Ident = body.parse()?;
            body.parse::<Token![:]>()?;
            let handler: Path = body.parse()?;
            entries.push((service, handler));
            if body.is_empty() {
                break;
            }
            body.parse::<Token![,]>()?;
        }
        Ok(Flow {
            attrs,
            vis,
            name,
            start,
            end,
            entries,
            brace: brace.span.join(),
        })
    }
}

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let flow: Flow = match syn::parse2(input) {
        Ok(flow) => flow,
        Err(error) => return error.to_compile_error(),
    };
    if flow.entries.is_empty() {
        return syn::Error::new(flow.brace, "a flow lists at least one `service: handler`")
            .to_compile_error();
    }
    for (service, _) in &flow.entries {
        let text = unraw(service);
        if text == "start" || text == "status" {
            return syn::Error::new(
                service.span(),
                format!("a service cannot be named `{text}`: the flow's own `{text}` function has that name"),
            )
            .to_compile_error();
        }
    }
    tokens(&flow)
}

fn tokens(flow: &Flow) -> TokenStream {
    let rt = private(None);
    let Flow {
        attrs,
        vis,
        name,
        start,
        end,
        entries,
        ..
    } = flow;
    let name_str = unraw(name);
    let infos = entries.iter().map(|(service, handler)| {
        let service = unraw(service);
        quote_spanned!(handler.span()=> #rt::HandlerInfo::of::<#handler>(#service))
    });
    // One function per service, in the order services first appear.
    let mut services: Vec<(&Ident, Vec<&Path>)> = Vec::new();
    for (service, handler) in entries {
        match services.iter_mut().find(|(s, _)| *s == service) {
            Some((_, handlers)) => handlers.push(handler),
            None => services.push((service, vec![handler])),
        }
    }
    let service_fns = services.iter().map(|(service, handlers)| {
        let first = handlers[0];
        let service_str = unraw(service);
        let names = handlers
            .iter()
            .map(|h| quote!(#h).to_string().replace(' ', ""))
            .collect::<Vec<_>>()
            .join("`, `");
        let doc = format!(
            "Service `{service_str}` of this flow (handlers `{names}`), ready to run with its \
             dependencies."
        );
        let with = handlers
            .iter()
            .map(|handler| quote_spanned!(handler.span()=> .with::<#handler>()));
        quote! {
            #[doc = #doc]
            #vis fn #service(
                bus: #rt::Arc<dyn #rt::Bus>,
                deps: <#first as #rt::Handler>::Deps,
            ) -> #rt::FlowService<<#first as #rt::Handler>::Deps> {
                #rt::FlowService::new::<Self>(bus, #service_str, deps) #(#with)*
            }
        }
    });
    let checks = entries.iter().enumerate().map(|(i, (_, handler))| {
        quote_spanned! {handler.span()=>
            #rt::assert_handler_declares_undo::<#handler>();
            #rt::assert_emits_taken::<{ #rt::is_taken(HANDLERS, HANDLERS[#i].emits, END) }>();
            #rt::assert_takes_emitted::<{ #rt::is_emitted(HANDLERS, HANDLERS[#i].on, START) }>();
            #rt::assert_listed_once::<{ #rt::is_unique(HANDLERS, #i) }>();
            #rt::assert_takes_alone::<{ #rt::takes_alone(HANDLERS, #i) }>();
            #rt::assert_emits_alone::<{ #rt::emits_alone(HANDLERS, #i, START) }>();
        }
    });
    let whole = quote_spanned! {name.span()=>
        #rt::assert_whole_flow::<{ #rt::is_whole(HANDLERS, START, END) }>();
    };
    quote! {
        #(#attrs)*
        #vis struct #name;

        #[automatically_derived]
        impl #rt::Choreography for #name {
            const NAME: &'static str = #name_str;
            type Start = #start;
            type End = #end;
            const HANDLERS: &'static [#rt::HandlerInfo] = &[#(#infos),*];
        }

        impl #name {
            /// Starts a saga of this flow: publishes its start event under a new saga id, which
            /// it returns.
            #vis async fn start(
                bus: &dyn #rt::Bus,
                event: #start,
            ) -> #rt::Result<#rt::SagaId, #rt::BusError> {
                #rt::choreography_start::<Self>(bus, event).await
            }

            /// The status of saga `id` of this flow as a tracker recorded it (`None` before it
            /// did), with its handlers' names.
            #vis async fn status(
                engine: &#rt::Engine,
                id: #rt::SagaId,
            ) -> #rt::Result<#rt::Option<#rt::SagaStatus<&'static str>>, #rt::SagaError> {
                #rt::choreography_status::<Self>(engine, id).await
            }

            #(#service_fns)*
        }

        const _: () = {
            const HANDLERS: &[#rt::HandlerInfo] = <#name as #rt::Choreography>::HANDLERS;
            const START: &str = <#start as #rt::Event>::NAME;
            const END: &str = <#end as #rt::Event>::NAME;
            #whole
            #(#checks)*
        };
    }
}

/// An identifier as written, without `r#`.
fn unraw(ident: &Ident) -> String {
    syn::ext::IdentExt::unraw(ident).to_string()
}
