//! The shop example's demo, run as the README shows it (`shop demo`, `shop demo
//! --choreographed`): three processes over the NATS server at `SAGA_NATS_URL` (skipped, saying
//! so, without it). Checked from what each process printed: the first and third orders
//! completed; the second declined by the payments service and its stock released by the
//! inventory service, after it was reserved; nothing refunded (nothing was charged).

use std::process::Command;

/// The example's binary, which `cargo test` builds beside this test's.
fn example() -> std::path::PathBuf {
    let me = std::env::current_exe().unwrap();
    let target = me.parent().and_then(|deps| deps.parent()).unwrap();
    let path = target.join("examples").join("shop");
    assert!(path.exists(), "{} is not built", path.display());
    path
}

fn demo(args: &[&str]) -> Option<Vec<String>> {
    let Ok(url) = std::env::var("SAGA_NATS_URL") else {
        eprintln!("SKIPPED: the shop demo needs NATS; set SAGA_NATS_URL to run it");
        return None;
    };
    let output = Command::new(example())
        .arg("demo")
        .args(args)
        .env("SAGA_NATS_URL", url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    Some(stdout.lines().map(|line| line.trim().to_owned()).collect())
}

/// Where `line` is in `lines`.
fn at(lines: &[String], line: &str) -> usize {
    lines
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no `{line}` in:\n{}", lines.join("\n")))
}

fn check(lines: &[String]) {
    at(lines, "orders | order-1: completed");
    at(lines, "orders | order-3: completed");
    let reserved = at(lines, "inventory | reserve stock for order-2");
    let declined = at(
        lines,
        "payments | decline order-2 (250 is over the limit of 100)",
    );
    let released = at(lines, "inventory | release res-order-2 (compensation)");
    let ended = lines
        .iter()
        .position(|l| l.starts_with("orders | order-2: compensated"))
        .expect("order-2 compensated");
    assert!(
        reserved < declined && declined < released && released < ended,
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("refund")), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("confirm order-2")),
        "{lines:?}"
    );
}

#[test]
fn the_orchestrated_shop_declines_the_second_order_and_releases_its_stock() {
    if let Some(lines) = demo(&[]) {
        check(&lines);
        assert!(lines.contains(
            &"orders | order-2: compensated (step `charge` failed: card declined: over the limit)"
                .to_string()
        ));
    }
}

#[test]
fn the_choreographed_shop_declines_the_second_order_and_releases_its_stock() {
    if let Some(lines) = demo(&["--choreographed"]) {
        check(&lines);
        assert!(lines.contains(
            &"orders | order-2: compensated (take_payment failed: card declined: over the limit)"
                .to_string()
        ));
    }
}
