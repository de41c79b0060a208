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

/// The keys of one attribute seen so far: the one place where duplicates are caught, before the
/// value is looked at, so that a repeated key is reported even when one of its values is bad.
struct Seen {
    attribute: &'static str,
    keys: Vec<String>,
}

impl Seen {
    fn new(attribute: &'static str) -> Self {
        Seen {
            attribute,
            keys: Vec::new(),
        }
    }

    /// Whether `key` is new; a repeat is an error at the repeat.
    fn first(&mut self, cx: &Ctxt, key: &Ident) -> bool {
        let name = key.to_string();
        if self.keys.contains(&name) {
            cx.error_spanned_by(
                key,
                format!("duplicate {} argument `{name}`", self.attribute),
            );
            false
        } else {
            self.keys.push(name);
            true
        }
    }
}

/// A flag: `key` alone, without a value.
fn flag(cx: &Ctxt, arg: &Arg) -> Option<Span> {
    if let Some(value) = &arg.value {
        cx.error_spanned_by(
            value,
            format!("`{}` takes no value; write just `{}`", arg.key, arg.key),
        );
        return None;
    }
    Some(arg.key.span())
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
    let mut seen = Seen::new("saga_step");
    for arg in &parsed {
        let key = &arg.key;
        if !STEP_KEYS.iter().any(|k| key == k) {
            unknown(cx, key, "saga_step", STEP_KEYS);
        } else if !seen.first(cx, key) {
            // Reported; the first occurrence stands.
        } else if key == &COMPENSATE {
            args.compensate = path_value(cx, arg);
        } else if key == &TIMEOUT {
            args.timeout = duration_value(cx, arg).and_then(|d| {
                if d.value.is_zero() {
                    cx.error_at(
                        d.span,
                        "`timeout` must be greater than zero; remove it for no time limit",
                    );
                    None
                } else {
                    Some(d)
                }
            });
        } else if key == &RETRIES {
            args.retries = count_value(cx, arg);
        } else if key == &BACKOFF {
            args.backoff = duration_value(cx, arg);
        } else if key == &PIVOT {
            args.pivot = flag(cx, arg);
        } else if key == &NOTHING_TO_UNDO {
            args.nothing_to_undo = flag(cx, arg);
        } else if key == &FALLBACK {
            args.fallback = path_value(cx, arg);
        } else if key == &COMPENSATION_RETRIES {
            args.compensation_retries = compensation_retries_value(cx, arg);
        } else if key == &COMPENSATE_ON_TIMEOUT {
            args.compensate_on_timeout = flag(cx, arg);
        } else if key == &REMOTE {
            args.remote = flag(cx, arg);
        } else if key == &CRATE {
            args.krate = crate_value(cx, arg);
        }
    }
    args
}

/// Parses the arguments of every `#[saga(...)]` (one, usually) of a `saga!`.
pub(crate) fn saga_args(cx: &Ctxt, attrs: &[syn::Attribute]) -> SagaArgs {
    let mut args = SagaArgs::default();
    let mut seen = Seen::new("saga");
    for attr in attrs {
        match attr.parse_args_with(parse_args) {
            Ok(parsed) => saga_arg_list(cx, &mut args, &mut seen, &parsed),
            Err(error) => cx.syn_error(error),
        }
    }
    args
}

fn saga_arg_list(
    cx: &Ctxt,
    args: &mut SagaArgs,
    seen: &mut Seen,
    parsed: &Punctuated<Arg, Token![,]>,
) {
    for arg in parsed {
        let key = &arg.key;
        if !SAGA_KEYS.iter().any(|k| key == k) {
            unknown(cx, key, "saga", SAGA_KEYS);
        } else if !seen.first(cx, key) {
            // Reported; the first occurrence stands.
        } else if key == &BEST_EFFORT_ROLLBACK {
            args.best_effort_rollback = flag(cx, arg);
        } else if key == &DEADLINE {
            args.deadline = duration_value(cx, arg).and_then(|d| {
                if d.value.is_zero() {
                    // As `timeout`: a zero deadline would roll back every saga before its
                    // first step.
                    cx.error_at(
                        d.span,
                        "`deadline` must be greater than zero; remove it for no deadline",
                    );
                    None
                } else {
                    Some(d)
                }
            });
        } else if key == &CRATE {
            args.krate = crate_value(cx, arg);
        }
    }
}

/// `crate = "path"`: the path of the runtime, for a crate that re-exports it.
fn crate_value(cx: &Ctxt, arg: &Arg) -> Option<Path> {
    string_value(cx, arg).and_then(|s| match syn::parse_str::<Path>(&s) {
        Ok(path) => Some(path),
        Err(_) => {
            cx.error_spanned_by(&arg.value, "expected a path, e.g. `crate = \"my::saga\"`");
            None
        }
    })
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
                    "`{}` takes a whole number or \"forever\", not \"{}\"",
                    arg.key,
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
