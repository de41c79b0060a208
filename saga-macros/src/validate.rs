//! Rules that involve more than one argument or more than one step.

use std::collections::HashMap;

use crate::ast::{Saga, Step};
use crate::ctxt::Ctxt;

/// Rules between the arguments of one `#[saga_step]`.
pub(crate) fn step(cx: &Ctxt, step: &Step) {
    let args = &step.args;
    if let (Some(pivot), Some(_)) = (args.pivot, &args.compensate) {
        cx.error_at(
            pivot,
            "a `pivot` step cannot have `compensate`: a point of no return is never undone",
        );
    }
    if let (Some(pivot), Some(_)) = (args.pivot, args.nothing_to_undo) {
        cx.error_at(
            pivot,
            "`pivot` and `nothing_to_undo` together: a pivot is already never undone; keep one",
        );
    }
    if let (Some(marker), Some(_)) = (args.nothing_to_undo, &args.compensate) {
        cx.error_at(
            marker,
            "`nothing_to_undo` contradicts `compensate`; keep one",
        );
    }
    if let Some(fallback) = &args.fallback {
        if names_itself(fallback, step.name) {
            cx.error_spanned_by(
                fallback,
                format!("step `{}` cannot be its own fallback", step.name),
            );
        }
    }
    if let Some(compensate) = &args.compensate {
        if names_itself(compensate, step.name) {
            cx.error_spanned_by(
                compensate,
                format!("step `{}` cannot be its own compensation", step.name),
            );
        }
    }
    if let Some(flag) = args.compensate_on_timeout {
        if args.compensate.is_none() {
            cx.error_at(
                flag,
                "`compensate_on_timeout` needs `compensate = ...`: there is nothing to run",
            );
        } else if args.timeout.is_none() {
            cx.error_at(
                flag,
                "`compensate_on_timeout` needs `timeout = ...`: this step never times out",
            );
        }
    }
    if let (Some(retries), None) = (&args.compensation_retries, &args.compensate) {
        cx.error_at(
            retries.span,
            "`compensation_retries` needs `compensate = ...`: this step has no compensation",
        );
    }
}

/// Rules across the steps of one `saga!`.
pub(crate) fn saga(cx: &Ctxt, saga: &Saga) {
    if saga.steps.is_empty() {
        cx.error_at(saga.brace_span, "a saga needs at least one step");
    }
    let mut seen = HashMap::new();
    let mut variants = HashMap::new();
    let step_enum = format!("{}Step", saga.name);
    for path in &saga.steps {
        let name = Saga::step_name(path);
        if let Some(first) = seen.insert(name.to_string(), path) {
            let message = if first == path {
                format!("step `{name}` is listed twice")
            } else {
                format!("two steps are named `{name}`; step names must be unique within a saga")
            };
            cx.error_spanned_by(path, message);
            continue;
        }
        match Saga::variant_name(path) {
            (variant, false) => {
                let why = match variant.is_empty() {
                    true => "its name is only underscores".to_owned(),
                    false => format!("`{variant}` is not an identifier"),
                };
                cx.error_spanned_by(
                    name,
                    format!(
                        "step `{name}` cannot name its variant of `{step_enum}`: {why}; give the \
                         step a name that starts with a letter (after any `_`)"
                    ),
                )
            }
            (variant, true) => {
                if let Some(first) = variants.insert(variant.clone(), name) {
                    cx.error_spanned_by(
                        name,
                        format!(
                            "steps `{first}` and `{name}` would both be the variant `{variant}` \
                             of `{step_enum}`; rename one of them"
                        ),
                    );
                }
            }
        }
    }
}

/// Whether `path` names the step itself: its bare name, or its name after `self::` or `crate::`
/// (the module the step is in, or the crate root where most steps are; `super::` is another
/// module, so another function).
fn names_itself(path: &syn::Path, name: &syn::Ident) -> bool {
    let mut segments = path.segments.iter().rev();
    let Some(last) = segments.next() else {
        return false;
    };
    last.ident == *name
        && last.arguments.is_empty()
        && segments.all(|s| s.ident == "self" || s.ident == "crate")
}
