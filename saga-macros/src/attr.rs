//! Parsing of `#[saga_step(...)]` and `#[saga(...)]` arguments into typed, spanned values.
//!
//! Every argument is parsed on its own, errors go to the [`Ctxt`] and parsing goes on, so the
//! user sees every bad argument in one build. Rules that involve two arguments live in
//! `validate.rs`.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, Path, Token};

use crate::ast::{CompensationRetries, SagaArgs, Sp, StepArgs};
use crate::ctxt::Ctxt;
use crate::duration;
use crate::symbol::*;

/// The most retries a step may declare: beyond it a typo is likelier than intent.
const MAX_RETRIES: u64 = 1_000;

/// One `key` or `key = value`.
struct Arg {
    key: Ident,
    value: Option<Expr>,
}

fn parse_args(input: ParseStream) -> syn::Result<Punctuated<Arg, Token![,]>> {
    Punctuated::parse_terminated_with(input, |input| {
        // `crate` is a keyword; `Ident::parse_any` accepts it as a key.
        let key = Ident::parse_any(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse::<Expr>()?)
        } else {
            None
        };
        Ok(Arg { key, value })
    })
}

/// Records a value once; a second occurrence is an error at the second key.
fn set<T>(cx: &Ctxt, slot: &mut Option<T>, key: &Ident, value: Option<T>) {
    let Some(value) = value else { return };
    if slot.is_some() {
        cx.error_spanned_by(key, format!("duplicate saga_step argument `{key}`"));
    } else {
        *slot = Some(value);
    }
}

/// Records a flag once.
fn set_flag(cx: &Ctxt, slot: &mut Option<Span>, arg: &Arg) {
    if let Some(value) = &arg.value {
        cx.error_spanned_by(
            value,
            format!("`{}` takes no value; write just `{}`", arg.key, arg.key),
        );
        return;
    }
    set(cx, slot, &arg.key, Some(arg.key.span()));
}

/// Parses `#[saga_step(...)]`'s arguments.
pub(crate) fn step_args(cx: &Ctxt, tokens: TokenStream) -> StepArgs {
    let mut args = StepArgs::default();
    let parsed = match parse_args.parse2(tokens) {
        Ok(parsed) => parsed,
        Err(error) => {
            cx.syn_error(error);
            return args;
        }
    };
    for arg in &parsed {
        let key = &arg.key;
        if key == &COMPENSATE {
            set(cx, &mut args.compensate, key, path_value(cx, arg));
        } else if key == &TIMEOUT {
            let value = duration_value(cx, arg).and_then(|d| {
                if d.value.is_zero() {
                    cx.error_at(d.span, "timeout must be greater than zero");
                    None
                } else {
                    Some(d)
                }
            });
            set(cx, &mut args.timeout, key, value);
        } else if key == &RETRIES {
            set(cx, &mut args.retries, key, count_value(cx, arg));
        } else if key == &BACKOFF {
            set(cx, &mut args.backoff, key, duration_value(cx, arg));
        } else if key == &PIVOT {
            set_flag(cx, &mut args.pivot, arg);
        } else if key == &NOTHING_TO_UNDO {
            set_flag(cx, &mut args.nothing_to_undo, arg);
        } else if key == &FALLBACK {
            set(cx, &mut args.fallback, key, path_value(cx, arg));
        } else if key == &COMPENSATION_RETRIES {
            set(
                cx,
                &mut args.compensation_retries,
                key,
                compensation_retries_value(cx, arg),
            );
        } else if key == &COMPENSATE_ON_TIMEOUT {
            set_flag(cx, &mut args.compensate_on_timeout, arg);
        } else {
            unknown(cx, key, "saga_step", STEP_KEYS);
        }
    }
    args
}

/// Parses `#[saga(...)]`'s arguments into `args`.
pub(crate) fn saga_args(cx: &Ctxt, args: &mut SagaArgs, attr: &syn::Attribute) {
    let parsed = match attr.parse_args_with(parse_args) {
        Ok(parsed) => parsed,
        Err(error) => {
            cx.syn_error(error);
            return;
        }
    };
    for arg in &parsed {
        let key = &arg.key;
        if key == &BEST_EFFORT_ROLLBACK {
            set_flag(cx, &mut args.best_effort_rollback, arg);
        } else if key == &DEADLINE {
            set(cx, &mut args.deadline, key, duration_value(cx, arg));
        } else if key == &CRATE {
            let value = string_value(cx, arg).and_then(|s| match syn::parse_str::<Path>(&s) {
                Ok(path) => Some(path),
                Err(_) => {
                    cx.error_spanned_by(&arg.value, "expected a path, e.g. `crate = \"my::saga\"`");
                    None
                }
            });
            set(cx, &mut args.krate, key, value);
        } else {
            unknown(cx, key, "saga", SAGA_KEYS);
        }
    }
}

/// An unknown key: list what is accepted, with a hint for a likely rename or typo.
fn unknown(cx: &Ctxt, key: &Ident, attribute: &str, keys: &[Symbol]) {
    let name = key.to_string();
    let list = keys.iter().map(|k| k.0).collect::<Vec<_>>().join(", ");
    let hint = RENAMED
        .iter()
        .find(|(old, _)| *old == name)
        .map(|(_, new)| *new)
        .filter(|new| keys.contains(new))
        .or_else(|| {
            keys.iter()
                .copied()
                .find(|k| edit_distance(k.0, &name) <= 2)
        })
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    cx.error_spanned_by(
        key,
        format!("unknown {attribute} argument `{name}`{hint}\nexpected one of: {list}"),
    );
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            prev = current;
        }
    }
    row[b.len()]
}

fn require_value<'a>(cx: &Ctxt, arg: &'a Arg, example: &str) -> Option<&'a Expr> {
    if arg.value.is_none() {
        cx.error_spanned_by(
            &arg.key,
            format!("`{}` needs a value: `{example}`", arg.key),
        );
    }
    arg.value.as_ref()
}

fn path_value(cx: &Ctxt, arg: &Arg) -> Option<Path> {
    let example = format!("{} = some_fn", arg.key);
    match require_value(cx, arg, &example)? {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => Some(p.path.clone()),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            cx.error_spanned_by(
                s,
                format!(
                    "`{}` takes a function path, not a string: `{example}`",
                    arg.key
                ),
            );
            None
        }
        other => {
            cx.error_spanned_by(other, format!("expected a function path: `{example}`"));
            None
        }
    }
}

fn string_value(cx: &Ctxt, arg: &Arg) -> Option<String> {
    let example = format!("{} = \"...\"", arg.key);
    match require_value(cx, arg, &example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.value()),
        other => {
            cx.error_spanned_by(other, format!("expected a string: `{example}`"));
            None
        }
    }
}

fn duration_value(cx: &Ctxt, arg: &Arg) -> Option<Sp<std::time::Duration>> {
    let example = format!("{} = \"5s\"", arg.key);
    match require_value(cx, arg, &example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => match duration::parse(&s.value()) {
            Ok(value) => Some(Sp {
                value,
                span: s.span(),
            }),
            Err(message) => {
                cx.error_spanned_by(s, message);
                None
            }
        },
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => {
            cx.error_spanned_by(
                i,
                format!(
                    "a bare number has no unit; write a string like `{} = \"{}s\"`",
                    arg.key,
                    i.base10_digits()
                ),
            );
            None
        }
        other => {
            cx.error_spanned_by(other, format!("expected a duration string: `{example}`"));
            None
        }
    }
}

fn count_value(cx: &Ctxt, arg: &Arg) -> Option<Sp<u32>> {
    let example = format!("{} = 3", arg.key);
    match require_value(cx, arg, &example)? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => match i.base10_parse::<u64>() {
            Ok(n) if n <= MAX_RETRIES => Some(Sp {
                value: n as u32,
                span: i.span(),
            }),
            Ok(n) => {
                cx.error_spanned_by(
                    i,
                    format!(
                        "`{} = {n}` is more than the maximum of {MAX_RETRIES}",
                        arg.key
                    ),
                );
                None
            }
            Err(error) => {
                cx.error_spanned_by(i, error);
                None
            }
        },
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => {
            cx.error_spanned_by(u, format!("`{}` cannot be negative", arg.key));
            None
        }
        other => {
            cx.error_spanned_by(other, format!("expected a whole number: `{example}`"));
            None
        }
    }
}

fn compensation_retries_value(cx: &Ctxt, arg: &Arg) -> Option<Sp<CompensationRetries>> {
    if let Some(Expr::Lit(ExprLit {
        lit: Lit::Str(s), ..
    })) = &arg.value
    {
        return if s.value() == "forever" {
            Some(Sp {
                value: CompensationRetries::Forever,
                span: s.span(),
            })
        } else {
            cx.error_spanned_by(
                s,
                format!(
                    "expected a whole number or \"forever\", found \"{}\"",
                    s.value()
                ),
            );
            None
        };
    }
    count_value(cx, arg).map(|n| Sp {
        value: CompensationRetries::Limited(n.value),
        span: n.span,
    })
}
