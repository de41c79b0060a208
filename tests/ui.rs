//! Compile-fail and compile-pass cases for `#[saga_step]` and `saga!`.

#[rustversion::attr(
    not(stable(1.95)),
    ignore = "the .stderr files are pinned to rustc 1.95"
)]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/**/*.rs");
    t.pass("ui-pass/*.rs");
}
