//! Named crash points at every durability boundary, for the crash tests.
//!
//! With the `failpoints` feature, in a debug build, `SAGA_FAILPOINT=<point>@<step>` makes the
//! process abort (as a crash would: no destructors, no flush) the first time it reaches that
//! point for that step (`saga` for the saga-level points). Without the feature, or in a release
//! build, `hit` is an empty inline function.

/// Every failpoint, for the tests that check each one fires.
pub const POINTS: &[&str] = &[
    "after_start_commit",
    "before_intent",
    "after_intent",
    "after_effect",
    "after_checkpoint",
    "before_compensation_intent",
    "after_compensation_intent",
    "after_compensation_effect",
    "after_compensation_checkpoint",
    "mid_recovery",
];

/// Aborts the process if `SAGA_FAILPOINT` names this point and step.
#[cfg(all(feature = "failpoints", debug_assertions))]
pub(crate) fn hit(point: &str, step: &str) {
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("SAGA_FAILPOINT").ok());
    if let Some(target) = target {
        if target.split_once('@') == Some((point, step)) {
            eprintln!("failpoint {point}@{step} fired");
            std::process::abort();
        }
    }
}

/// Does nothing: failpoints are compiled out.
#[cfg(not(all(feature = "failpoints", debug_assertions)))]
#[inline(always)]
pub(crate) fn hit(_point: &str, _step: &str) {}
