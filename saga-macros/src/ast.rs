//! The IR: what `#[saga_step]` and `saga!` say, borrowed from syn with spans kept so that
//! validation can point at the user's tokens.

use std::time::Duration;

use proc_macro2::Span;
use syn::{Attribute, Ident, ItemFn, Path, Type, Visibility};

/// A value with the span of the tokens it came from.
#[derive(Clone)]
pub(crate) struct Sp<T> {
    /// The value.
    pub(crate) value: T,
    /// Where it was written.
    pub(crate) span: Span,
}

/// `compensation_retries = N | "forever"`.
#[derive(Clone, Copy)]
pub(crate) enum CompensationRetries {
    /// N retries.
    Limited(u32),
    /// Until it succeeds.
    Forever,
}

/// The arguments of one `#[saga_step(...)]`, each with its span.
#[derive(Default)]
pub(crate) struct StepArgs {
    /// `compensate = path`.
    pub(crate) compensate: Option<Path>,
    /// `timeout = "5s"`.
    pub(crate) timeout: Option<Sp<Duration>>,
    /// `retries = N`.
    pub(crate) retries: Option<Sp<u32>>,
    /// `backoff = "100ms"`.
    pub(crate) backoff: Option<Sp<Duration>>,
    /// `pivot`: the span of the word.
    pub(crate) pivot: Option<Span>,
    /// `nothing_to_undo`: the span of the word.
    pub(crate) nothing_to_undo: Option<Span>,
    /// `fallback = path`.
    pub(crate) fallback: Option<Path>,
    /// `compensation_retries = N | "forever"`.
    pub(crate) compensation_retries: Option<Sp<CompensationRetries>>,
    /// `compensate_on_timeout`: the span of the word.
    pub(crate) compensate_on_timeout: Option<Span>,
    /// `remote`: the step is carried out by a participant service; the function builds the
    /// command. The span of the word.
    pub(crate) remote: Option<Span>,
    /// `crate = "path"`: where the runtime is, when not at `::saga_runtime`.
    pub(crate) krate: Option<Path>,
}

/// A `#[saga_step]` function.
pub(crate) struct Step<'a> {
    /// The function as the user wrote it; re-emitted unchanged.
    pub(crate) original: &'a ItemFn,
    /// Its name, which is also the step's name.
    pub(crate) name: &'a Ident,
    /// `T` of the first parameter `&mut T` (or `&T`).
    pub(crate) ctx_ty: &'a Type,
    /// Whether the step takes the context by `&mut` (it may change it) rather than `&`.
    pub(crate) ctx_mut: bool,
    /// `H` of the optional second parameter `&H` (the step handle, `StepCx<D>`).
    pub(crate) handle_ty: Option<&'a Type>,
    /// The types of the parameters after it: outputs of earlier steps (`Output<step>`).
    pub(crate) input_tys: Vec<&'a Type>,
    /// The return type, for placing type errors about it.
    pub(crate) output: &'a syn::ReturnType,
    /// Its arguments.
    pub(crate) args: StepArgs,
}

/// The arguments of `#[saga(...)]` inside `saga!`.
#[derive(Default)]
pub(crate) struct SagaArgs {
    /// `best_effort_rollback`.
    pub(crate) best_effort_rollback: Option<Span>,
    /// `deadline = "30s"`.
    pub(crate) deadline: Option<Sp<Duration>>,
    /// `crate = "path"`: where the runtime is, for crates that re-export it.
    pub(crate) krate: Option<Path>,
}

/// A `saga!` invocation.
pub(crate) struct Saga {
    /// Doc comments and other attributes for the saga type (`#[saga]` removed).
    pub(crate) attrs: Vec<Attribute>,
    /// Saga-wide options.
    pub(crate) args: SagaArgs,
    /// The saga type's visibility.
    pub(crate) vis: Visibility,
    /// The saga type's name.
    pub(crate) name: Ident,
    /// The context type.
    pub(crate) ctx_ty: Type,
    /// The dependencies type; `()` when omitted.
    pub(crate) deps_ty: Option<Type>,
    /// The steps, in order (the members of a group in their place).
    pub(crate) steps: Vec<Path>,
    /// The parallel groups: `parallel(a, b)`.
    pub(crate) groups: Vec<Group>,
    /// The braces around the steps, for errors about the list as a whole.
    pub(crate) brace_span: Span,
}

/// A parallel group in `saga!`: `parallel(book_flight, book_hotel)`.
pub(crate) struct Group {
    /// The positions of its members among the saga's steps.
    pub(crate) members: std::ops::Range<usize>,
}

impl Saga {
    /// The step's name: the last segment of its path.
    pub(crate) fn step_name(path: &Path) -> &Ident {
        &path
            .segments
            .last()
            .expect("a parsed path has a segment")
            .ident
    }

    /// The step's name in CamelCase, for its variant of the generated step enum
    /// (`reserve_inventory` is `ReserveInventory`, `r#type` is `Type`), and whether that is an
    /// identifier (`__` and `_1` give none).
    pub(crate) fn variant_name(path: &Path) -> (String, bool) {
        let name = syn::ext::IdentExt::unraw(Self::step_name(path)).to_string();
        let camel = camel_case(&name);
        let valid = syn::parse_str::<Ident>(&camel).is_ok();
        (camel, valid)
    }
}

/// `reserve_inventory` to `ReserveInventory`.
fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Saga;

    fn variant(step: &str) -> (String, bool) {
        Saga::variant_name(&syn::parse_str(step).expect("a path"))
    }

    #[test]
    fn variant_names_are_camel_case_identifiers_or_refused() {
        assert_eq!(
            variant("reserve_inventory"),
            ("ReserveInventory".into(), true)
        );
        assert_eq!(variant("inventory::reserve"), ("Reserve".into(), true));
        assert_eq!(variant("r#type"), ("Type".into(), true));
        assert_eq!(variant("__"), ("".into(), false));
        assert_eq!(variant("_1"), ("1".into(), false));
        assert_eq!(variant("_١"), ("١".into(), false));
        assert_eq!(variant("self_"), ("Self".into(), false), "a keyword");
    }
}
