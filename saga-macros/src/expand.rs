//! IR to tokens. No validation happens here: by the time these run, `validate` has accepted the
//! input (or its errors ride along with this output, see `fallback.rs`).

pub(crate) mod saga;
pub(crate) mod step;

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::quote;

/// The path of the runtime's hidden support module.
pub(crate) fn private(krate: Option<&syn::Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::saga_runtime::__private),
    }
}

/// A `Duration` constant, in the largest whole unit for readability of the expansion.
pub(crate) fn duration(rt: &TokenStream, d: Duration) -> TokenStream {
    let nanos = d.as_nanos() as u64;
    if nanos.is_multiple_of(1_000_000_000) {
        let secs = d.as_secs();
        quote!(#rt::Duration::from_secs(#secs))
    } else if nanos.is_multiple_of(1_000_000) {
        let millis = nanos / 1_000_000;
        quote!(#rt::Duration::from_millis(#millis))
    } else {
        quote!(#rt::Duration::from_nanos(#nanos))
    }
}

/// Prints an expansion to stderr when `SAGA_MACROS_DEBUG` names this item (or is `1`).
pub(crate) fn debug(name: &str, tokens: &TokenStream) {
    if let Ok(wanted) = std::env::var("SAGA_MACROS_DEBUG") {
        if wanted == "1" || wanted == name {
            eprintln!("{tokens}");
        }
    }
}
