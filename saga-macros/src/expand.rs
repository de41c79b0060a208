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
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        quote!(#rt::Duration::from_secs(#secs))
    } else if let (true, Ok(millis)) = (nanos % 1_000_000 == 0, u64::try_from(d.as_millis())) {
        quote!(#rt::Duration::from_millis(#millis))
    } else {
        // Never truncated: seconds and the nanoseconds beyond them.
        quote!(#rt::Duration::new(#secs, #nanos))
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
