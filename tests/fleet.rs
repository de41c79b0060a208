//! Many worker processes on one SQLite file: each saga runs in one of them at a time, a killed
//! worker's sagas are taken over when its lease expires, and a worker that was paused past its
//! lease is fenced when it wakes up (the run and its checks: `fleet_run.rs`).
//!
//! `CRASH_SEED` replays a run; `FLEET_SAGAS` and `FLEET_KILLS` set the scale (CI: 1,000 sagas, 50
//! kills; `cargo test -p saga-tests --test fleet -- --ignored` runs 5,000 and 250).

#[path = "fleet_run.rs"]
mod fleet_run;

use fleet_run::{checks, run_fleet, Fleet};

fn fleet(sagas: u64, kills: u64) -> Fleet {
    Fleet {
        sagas: checks::setting("FLEET_SAGAS", sagas),
        kills: checks::setting("FLEET_KILLS", kills),
        workers: 3,
        pauses: 1,
        restarts: 0,
    }
}

#[test]
fn workers_killed_and_paused_lose_nothing_and_never_share_a_saga() {
    run_fleet(checks::files(), fleet(1_000, 50));
}

#[test]
#[ignore = "the larger scale: 5,000 sagas, 250 kills"]
fn workers_killed_and_paused_lose_nothing_and_never_share_a_saga_at_scale() {
    run_fleet(checks::files(), fleet(5_000, 250));
}
