//! The argument names of `#[saga_step(...)]` and `#[saga(...)]`.

/// An argument name.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) struct Symbol(pub(crate) &'static str);

pub(crate) const COMPENSATE: Symbol = Symbol("compensate");
pub(crate) const TIMEOUT: Symbol = Symbol("timeout");
pub(crate) const RETRIES: Symbol = Symbol("retries");
pub(crate) const BACKOFF: Symbol = Symbol("backoff");
pub(crate) const PIVOT: Symbol = Symbol("pivot");
pub(crate) const NOTHING_TO_UNDO: Symbol = Symbol("nothing_to_undo");
pub(crate) const FALLBACK: Symbol = Symbol("fallback");
pub(crate) const COMPENSATION_RETRIES: Symbol = Symbol("compensation_retries");
pub(crate) const COMPENSATE_ON_TIMEOUT: Symbol = Symbol("compensate_on_timeout");
pub(crate) const REMOTE: Symbol = Symbol("remote");

/// Every `#[saga_step]` argument, in the order error messages list them.
pub(crate) const STEP_KEYS: &[Symbol] = &[
    COMPENSATE,
    TIMEOUT,
    RETRIES,
    BACKOFF,
    PIVOT,
    NOTHING_TO_UNDO,
    FALLBACK,
    COMPENSATION_RETRIES,
    COMPENSATE_ON_TIMEOUT,
    REMOTE,
    CRATE,
];

pub(crate) const BEST_EFFORT_ROLLBACK: Symbol = Symbol("best_effort_rollback");
pub(crate) const DEADLINE: Symbol = Symbol("deadline");
pub(crate) const CRATE: Symbol = Symbol("crate");

/// Every `#[saga(...)]` argument.
pub(crate) const SAGA_KEYS: &[Symbol] = &[BEST_EFFORT_ROLLBACK, DEADLINE, CRATE];

/// Names users plausibly reach for, and the argument they mean.
pub(crate) const RENAMED: &[(&str, Symbol)] = &[
    ("retry", RETRIES),
    ("max_retries", RETRIES),
    ("attempts", RETRIES),
    ("compensation", COMPENSATE),
    ("compensate_with", COMPENSATE),
    ("undo", COMPENSATE),
    ("rollback", COMPENSATE),
    ("timeout_ms", TIMEOUT),
    ("no_compensation", NOTHING_TO_UNDO),
    ("irreversible", PIVOT),
    ("point_of_no_return", PIVOT),
    ("retry_delay", BACKOFF),
    ("delay", BACKOFF),
];

impl PartialEq<Symbol> for syn::Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl std::fmt::Display for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
