//! What to emit when there are errors: the errors, plus enough of the intended output that the
//! rest of the crate still type-checks, so the user sees the one real mistake and not a cascade.

use proc_macro2::TokenStream;
use quote::quote;

use crate::expand::{private, step::marker};

// Output, next to the `compile_error!`s:
//
//     async fn reserve(...) { ... }        // unchanged
//     struct reserve { _private: () }
//     impl<C, D> SagaStep<C, D> for reserve { ... }  // fits any saga that lists it
//     impl DeclaresUndo for reserve {}
pub(crate) fn step(item: &syn::ItemFn, errors: syn::Error) -> TokenStream {
    let rt = private(None);
    let name = &item.sig.ident;
    let name_str = name.to_string();
    let errors = errors.to_compile_error();
    let marker = marker(item);
    quote! {
        #errors
        #item
        #marker

        #[automatically_derived]
        impl<__C, __D> #rt::SagaStep<__C, __D> for #name {
            const DESCRIPTION: #rt::StepDescription = #rt::StepDescription {
                name: #name_str,
                policy: #rt::StepPolicy::DEFAULT,
                compensation: #rt::None,
                fallback: #rt::None,
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
    }
}
