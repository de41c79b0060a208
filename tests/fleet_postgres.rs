//! Many worker processes on one PostgreSQL database, with the database restarted under them:
//! each saga runs in one worker at a time, a killed worker's sagas are taken over when its lease
//! expires, a worker paused past its lease is fenced when it wakes up, and a restart in immediate
//! mode costs time, never sagas (the run and its checks: `fleet_run.rs`). Its own test binary,
//! so that the restarts never disturb other tests. Skipped, saying so, without
//! `SAGA_POSTGRES_URL`.
//!
//! `CRASH_SEED` replays a run; `FLEET_SAGAS` and `FLEET_KILLS` set the scale (CI: 1,000 sagas,
//! 40 kills, 2 pauses, 2 restarts; `cargo test -p saga-tests --test fleet_postgres -- --ignored`
//! runs 5,000 sagas and 100 kills).

#[path = "fleet_run.rs"]
mod fleet_run;

use fleet_run::{checks, run_fleet, Fleet};

fn fleet(sagas: u64, kills: u64) -> Fleet {
    Fleet {
        sagas: checks::setting("FLEET_SAGAS", sagas),
        kills: checks::setting("FLEET_KILLS", kills),
        workers: 4,
        pauses: 2,
        restarts: 2,
    }
}

#[test]
fn workers_killed_paused_and_a_restarted_database_lose_nothing() {
    let Some(url) = saga_tests::postgres_url("the PostgreSQL fleet test") else {
        return;
    };
    run_fleet(checks::files_on_postgres(&url, "fleet"), fleet(1_000, 40));
}

#[test]
#[ignore = "the larger scale: 5,000 sagas, 100 kills"]
fn workers_killed_paused_and_a_restarted_database_lose_nothing_at_scale() {
    let Some(url) = saga_tests::postgres_url("the PostgreSQL fleet test") else {
        return;
    };
    run_fleet(checks::files_on_postgres(&url, "fleet"), fleet(5_000, 100));
}
