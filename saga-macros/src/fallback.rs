//! What to emit when there are errors: the errors, plus enough of the intended output that the
//! rest of the crate still type-checks, so the user sees the one real mistake and not a cascade.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Item;

use crate::expand::{private, step::marker};

// Output, next to the `compile_error!`s:
//
//     async fn reserve(...) { ... }        // unchanged
//     struct reserve { _private: () }
//     impl<C, D> SagaStep<C, D> for reserve { ... }  // fits any saga that lists it
//     impl DeclaresUndo for reserve {}
//     impl FallbackDeclaresUndo for reserve {}
pub(crate) fn step(item: &syn::ItemFn, errors: syn::Error) -> TokenStream {
    let rt = private(None);
    let name = &item.sig.ident;
    let name_str = name.to_string();
    let errors = errors.to_compile_error();
    if item.sig.receiver().is_some() {
        // A method: the function is inside an `impl`, where a struct and impls cannot go.
        return quote!(#errors #item);
    }
    let marker = marker(&rt, item);
    quote! {
        #errors
        #item
        #marker

        #[automatically_derived]
        impl<__P> #rt::InputsRunBefore<__P> for #name {}

        #[automatically_derived]
        impl #rt::NamedStep for #name {
            const NAME: &'static str = #name_str;
            type Output = ();
        }

        #[automatically_derived]
        impl<__C, __D> #rt::SagaStep<__C, __D> for #name {
            const DESCRIPTION: #rt::StepDescription = #rt::StepDescription {
                name: #name_str,
                policy: #rt::StepPolicy::DEFAULT,
                compensation: #rt::None,
                fallback: #rt::None,
                inputs: &[],
                output: #rt::None,
                remote: #rt::None,
            };
            const FALLBACK: #rt::Option<fn() -> #rt::StepDef<__C, __D>> = #rt::None;

            fn action<'a>(_: &'a mut __C, _: &'a #rt::StepCx<__D>) -> #rt::StepFuture<'a> {
                #rt::no_compensation()
            }

            fn compensate<'a>(_: &'a mut __C, _: &'a #rt::StepCx<__D>) -> #rt::StepFuture<'a> {
                #rt::no_compensation()
            }
        }

        #[automatically_derived]
        impl #rt::DeclaresUndo for #name {}

        #[automatically_derived]
        impl #rt::FallbackDeclaresUndo for #name {}
    }
}

/// `#[saga_step]` on something other than a function: the error, at the item's keyword, and the
/// item unchanged.
pub(crate) fn not_a_function(input: TokenStream) -> TokenStream {
    let (what, span) = match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Struct(item)) => ("a struct", item.struct_token.span),
        Ok(Item::Enum(item)) => ("an enum", item.enum_token.span),
        Ok(Item::Union(item)) => ("a union", item.union_token.span),
        Ok(Item::Trait(item)) => ("a trait", item.trait_token.span),
        Ok(Item::Impl(item)) => ("an `impl` block", item.impl_token.span),
        Ok(Item::Mod(item)) => ("a module", item.mod_token.span),
        Ok(Item::Const(item)) => ("a const", item.const_token.span),
        Ok(Item::Static(item)) => ("a static", item.static_token.span),
        Ok(Item::Type(item)) => ("a type alias", item.type_token.span),
        Ok(Item::Use(item)) => ("a `use`", item.use_token.span),
        _ => ("this item", Span::call_site()),
    };
    let error = syn::Error::new(
        span,
        format!("`#[saga_step]` goes on an `async fn`, not on {what}"),
    )
    .to_compile_error();
    quote!(#error #input)
}
