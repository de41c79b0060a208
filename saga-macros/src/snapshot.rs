//! The checked-in expansion of the order example (`examples/order_saga-expanded.rs`), so readers
//! see exactly what the macros generate, and a change to it cannot go unreviewed.
//!
//! Regenerate with `SAGA_EXPAND=overwrite cargo test -p saga-macros`, then review `git diff`.

use std::path::Path;

use quote::ToTokens;
use syn::{Item, Meta};

const HEADER: &str = "\
// @generated: the expansion of `order_saga.rs` by `#[saga_step]` and `saga!`.
// Checked by `cargo test -p saga-macros`; regenerate with
// `SAGA_EXPAND=overwrite cargo test -p saga-macros` and review the diff.
";

/// Expands every `#[saga_step]` function and `saga!` invocation of a source file.
fn expand_file(source: &str) -> String {
    let file = syn::parse_file(source).expect("the example parses");
    let mut items = Vec::new();
    for item in file.items {
        match item {
            Item::Fn(mut function) => {
                let position = function.attrs.iter().position(|a| {
                    a.path()
                        .segments
                        .last()
                        .is_some_and(|s| s.ident == "saga_step")
                });
                let Some(position) = position else {
                    items.push(Item::Fn(function));
                    continue;
                };
                let attr = function.attrs.remove(position);
                let args = match attr.meta {
                    Meta::List(list) => list.tokens,
                    _ => Default::default(),
                };
                items.extend(reparse(crate::step(args, function.to_token_stream())));
            }
            Item::Macro(mac)
                if mac
                    .mac
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "saga") =>
            {
                items.extend(reparse(crate::saga_impl(mac.mac.tokens)));
            }
            other => items.push(other),
        }
    }
    // The macros' own imports are unused once the macros are expanded. The file is prettyplease's
    // output, compared byte for byte: `cargo fmt` must leave it alone (`#![rustfmt::skip]` is
    // unstable as an inner attribute; this spelling is not).
    let mut attrs = file.attrs;
    attrs.push(syn::parse_quote!(#![allow(unused_imports)]));
    attrs.push(syn::parse_quote!(#![cfg_attr(rustfmt, rustfmt::skip)]));
    let expanded = syn::File {
        shebang: None,
        attrs,
        items,
    };
    format!("{HEADER}\n{}", prettyplease::unparse(&expanded))
}

fn reparse(tokens: proc_macro2::TokenStream) -> Vec<Item> {
    syn::parse2::<syn::File>(tokens)
        .expect("an expansion parses as items")
        .items
}

#[test]
fn order_saga_expansion_is_reviewed() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let source = std::fs::read_to_string(examples.join("order_saga.rs")).unwrap();
    let actual = expand_file(&source);
    let snapshot = examples.join("order_saga-expanded.rs");
    if std::env::var("SAGA_EXPAND").as_deref() == Ok("overwrite") {
        std::fs::write(&snapshot, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    if expected != actual {
        let first_difference = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()))
            + 1;
        panic!(
            "the expansion of examples/order_saga.rs changed (first difference at line \
             {first_difference} of {}); regenerate with `SAGA_EXPAND=overwrite cargo test -p \
             saga-macros` and review the diff",
            snapshot.display()
        );
    }
}
