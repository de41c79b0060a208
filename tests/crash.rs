//! Crash tests: the worker (`crash_worker`) runs generated sagas on a SQLite file (or a
//! PostgreSQL schema) and is killed with SIGKILL at random moments, or aborts at a named
//! failpoint, then restarted; at the end nothing acknowledged is lost and every saga is
//! consistent.
//!
//! `CRASH_SEED=<n>` replays a run (the seed is printed); `CRASH_SAGAS` and `CRASH_KILLS` set the
//! scale (CI: 2,000 sagas, 200 kills on SQLite, 1,000 and 100 on PostgreSQL, which is skipped,
//! saying so, without `SAGA_POSTGRES_URL`; `cargo test -p saga-tests --test crash -- --ignored`
//! runs 20,000 and 2,000, and 10,000 and 1,000).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

#[path = "crash_checks.rs"]
mod checks;

use checks::{check_consistent, files, ledger, rank, seed, setting, worker, Files};

/// Runs one worker over sagas `from..to`; kills it after `kill_after` if given. Returns the
/// indices it acknowledged and whether it was killed.
fn round(
    files: &Files,
    seed: u64,
    from: u64,
    to: u64,
    kill_after: Option<Duration>,
) -> (Vec<u64>, bool) {
    let args = [
        "soak".to_owned(),
        seed.to_string(),
        from.to_string(),
        to.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = worker(files, &args, None)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    saga_tests::process::supervise(child, kill_after)
}

fn soak(files: Files, sagas: u64, kills: u64) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    // Small batches: a worker that finishes its batch before the kill lands is not killed.
    let batch = (sagas / kills.max(1) / 2).clamp(1, 50);
    let mut acked: HashSet<u64> = HashSet::new();
    let mut ranks: HashMap<String, u64> = HashMap::new();
    let mut killed = 0;
    let mut next = 0;
    loop {
        while acked.contains(&next) {
            next += 1;
        }
        let done = next >= sagas;
        let to = (next + batch).min(sagas);
        let kill_after = (killed < kills).then(|| Duration::from_millis(rng.u64(5..150)));
        let (acks, was_killed) = round(&files, seed, next, to, kill_after);
        acked.extend(acks);
        killed += u64::from(was_killed);
        files.integrity_ok();
        for (id, saga) in files.stored() {
            let rank = rank(&saga.status, saga.steps.len());
            let before = ranks.insert(id.clone(), rank).unwrap_or(0);
            assert!(
                rank >= before,
                "{id}: status went backwards ({before} -> {rank}): {}",
                saga.status
            );
        }
        if done && !was_killed {
            break;
        }
    }
    assert!(killed >= kills, "only {killed} kills");
    let (sagas_stored, reapplied) = checks::check_every_saga(&files, seed, sagas);
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let mut parked: BTreeMap<String, usize> = BTreeMap::new();
    for saga in sagas_stored.values() {
        *by_status
            .entry(saga.status["status"].as_str().unwrap())
            .or_default() += 1;
        if let Some(reason) = saga.status["reason"].as_str() {
            *parked.entry(reason.chars().take(60).collect()).or_default() += 1;
        }
    }
    eprintln!(
        "crash test{}: {sagas} sagas, {killed} kills, {reapplied} effects re-applied after a crash \
         (deduplicated by key), final statuses {by_status:?}, parked because {parked:?}",
        if files.postgres.is_some() { " on PostgreSQL" } else { "" }
    );
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    soak(
        files(),
        setting("CRASH_SAGAS", 2_000),
        setting("CRASH_KILLS", 200),
    );
}

#[test]
#[ignore = "the full scale: 20,000 sagas, 2,000 kills"]
fn sigkill_at_random_moments_loses_nothing_at_scale() {
    soak(
        files(),
        setting("CRASH_SAGAS", 20_000),
        setting("CRASH_KILLS", 2_000),
    );
}

#[test]
fn sigkill_at_random_moments_loses_nothing_on_postgres() {
    let Some(url) = saga_tests::postgres_url("the PostgreSQL crash soak") else {
        return;
    };
    soak(
        checks::files_on_postgres(&url, "soak"),
        setting("CRASH_SAGAS", 1_000),
        setting("CRASH_KILLS", 100),
    );
}

#[test]
#[ignore = "the full scale on PostgreSQL: 10,000 sagas, 1,000 kills"]
fn sigkill_at_random_moments_loses_nothing_on_postgres_at_scale() {
    let Some(url) = saga_tests::postgres_url("the PostgreSQL crash soak") else {
        return;
    };
    soak(
        checks::files_on_postgres(&url, "soak"),
        setting("CRASH_SAGAS", 10_000),
        setting("CRASH_KILLS", 1_000),
    );
}

/// Runs the matrix saga once with a failpoint (which must fire), then to the end without.
fn crash_at(point: &str, fail_pivot: bool) -> Result<(), String> {
    let files = files();
    let id = saga_runtime::SagaId::new().to_string();
    let plan = if fail_pivot { "fail-pivot" } else { "no-fail" };
    let run = |failpoint: Option<&str>| {
        worker(&files, &["one", &id, plan], failpoint)
            .stdout(Stdio::null())
            .output()
            .unwrap()
    };
    let crash = |failpoint: &str| -> Result<(), String> {
        let output = run(Some(failpoint));
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains(&format!("failpoint {failpoint} fired")) {
            // What the saga did instead, and what the worker said, so that a run that took
            // another path can be told from a failpoint that is not reached (once, the worker
            // exited as soon as the store had the saga's end, before the run reached the
            // failpoint after that commit: the worker now waits for its runs).
            let status = files
                .stored()
                .get(&id)
                .map(|saga| saga.status.to_string())
                .unwrap_or_else(|| "not recorded".into());
            let said: Vec<&str> = stderr.lines().rev().take(8).collect();
            return Err(format!(
                "failpoint {failpoint} never fired ({}); the saga is {status}; the worker's last \
                 words: {said:?}",
                output.status
            ));
        }
        files.integrity_ok();
        Ok(())
    };
    if point == "mid_recovery@saga" {
        // Recovery only happens after a crash: crash mid-step first, then mid-recovery.
        crash("after_intent@step_1")?;
    }
    crash(point)?;
    let (saga, effects) = restarted(&files, point, run(None), &id);
    let expected = if fail_pivot {
        "compensated"
    } else {
        "completed"
    };
    assert_eq!(saga.status["status"], expected, "{point}");
    check_consistent(&id, &saga, &effects);
    Ok(())
}

/// After a worker's restart (`output`) that ran saga `id` to its end: the stored saga and its
/// effects, the store checked intact. An effect applied again after a crash (its key seen
/// twice) is the at-least-once rule at work; the ledger keeps each key's effect once.
fn restarted(
    files: &Files,
    point: &str,
    output: std::process::Output,
    id: &str,
) -> (checks::Stored, Vec<(String, u64)>) {
    assert!(
        output.status.success(),
        "{point}: restart failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    files.integrity_ok();
    let saga = files.stored().remove(id).expect("the saga is stored");
    let (effects, _) = ledger(&files.ledger);
    (saga, effects.get(id).cloned().unwrap_or_default())
}

/// Runs the group matrix saga once with a failpoint (which must fire), then to the end without;
/// checks its members' effects: each applied once (in any order, between `step_0` and
/// `step_4`), and after a failing member the completed ones undone before `step_0`.
fn crash_in_group_at(point: &str, plan: GroupPlan) -> Result<(), String> {
    crash_in_matrix_at("group", point, plan)
}

/// [`crash_in_group_at`] for the group matrix saga of worker mode `mode`: `group` (from
/// `saga!`) or `built` (assembled at run time, members `member[1]` to `member[3]`).
fn crash_in_matrix_at(mode: &str, point: &str, plan: GroupPlan) -> Result<(), String> {
    let files = files();
    let id = saga_runtime::SagaId::new().to_string();
    let (plan, failed) = match plan {
        GroupPlan::Completes => ("no-fail", None),
        GroupPlan::LastFails => ("fail-member", Some(3)),
        GroupPlan::FirstFails => ("fail-first", Some(1)),
    };
    let run = |failpoint: Option<&str>| {
        worker(&files, &[mode, &id, plan], failpoint)
            .stdout(Stdio::null())
            .output()
            .unwrap()
    };
    let output = run(Some(point));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains(&format!("failpoint {point} fired")) {
        let said: Vec<&str> = stderr.lines().rev().take(8).collect();
        return Err(format!(
            "failpoint {point} never fired; last words: {said:?}"
        ));
    }
    files.integrity_ok();
    let (saga, effects) = restarted(&files, point, run(None), &id);
    let of = |kind: &str| -> Vec<u64> {
        effects
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, s)| *s)
            .collect()
    };
    let (done, undone) = (of("do"), of("undo"));
    let sorted = |mut steps: Vec<u64>| {
        steps.sort_unstable();
        steps
    };
    let expected = if failed.is_some() {
        "compensated"
    } else {
        "completed"
    };
    if saga.status["status"] != expected {
        return Err(format!("{point}: the saga is {}", saga.status));
    }
    match failed {
        None => {
            let ok = done.len() == 5
                && done[0] == 0
                && done[4] == 4
                && sorted(done[1..4].to_vec()) == [1, 2, 3]
                && undone.is_empty();
            if !ok {
                return Err(format!("{point}: done {done:?}, undone {undone:?}"));
            }
        }
        Some(failed) => {
            // The two other members completed (the siblings of a failing member finish): they
            // are undone (in either order, they run at once), then step_0.
            let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&m| m != failed).collect();
            let ok = done.first() == Some(&0)
                && sorted(done[1..].to_vec()) == others
                && undone.len() == 3
                && sorted(undone[..2].to_vec()) == others
                && undone[2] == 0;
            if !ok {
                return Err(format!("{point}: done {done:?}, undone {undone:?}"));
            }
        }
    }
    Ok(())
}

/// How the group matrix's saga goes.
#[derive(Clone, Copy, Debug)]
enum GroupPlan {
    /// Every member completes.
    Completes,
    /// The member that ends last fails for good once the other two completed.
    LastFails,
    /// The member that ends first fails for good while the other two still run.
    FirstFails,
}

#[test]
fn every_failpoint_inside_a_parallel_group_fires_and_the_saga_recovers_from_it() {
    let mut cases: Vec<(String, GroupPlan)> = Vec::new();
    for point in [
        "before_intent",
        "after_intent",
        "after_effect",
        "after_checkpoint",
    ] {
        for member in ["member_1", "member_2", "member_3"] {
            cases.push((format!("{point}@{member}"), GroupPlan::Completes));
        }
        // The siblings still running when member 1 failed, crashed as they finish.
        for member in ["member_2", "member_3"] {
            if point != "before_intent" {
                cases.push((format!("{point}@{member}"), GroupPlan::FirstFails));
            }
        }
    }
    for point in [
        "before_compensation_intent",
        "after_compensation_intent",
        "after_compensation_effect",
        "after_compensation_checkpoint",
    ] {
        for member in ["member_1", "member_2"] {
            cases.push((format!("{point}@{member}"), GroupPlan::LastFails));
        }
        for member in ["member_2", "member_3"] {
            cases.push((format!("{point}@{member}"), GroupPlan::FirstFails));
        }
    }
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(point, plan)| crash_in_group_at(point, *plan).err())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!(
        "group failpoint matrix: {} crashes, each recovered",
        cases.len()
    );
}

/// A saga assembled at run time recovers like the one `saga!` declares: crashes inside its group
/// of step instances, forward and in their concurrent compensations, each resumed by a worker
/// that builds the definition again from the stored context.
#[test]
fn a_built_saga_recovers_from_crashes_inside_its_group_of_instances() {
    let mut cases: Vec<(String, GroupPlan)> = Vec::new();
    for point in ["after_intent", "after_effect", "after_checkpoint"] {
        for member in ["member[1]", "member[3]"] {
            cases.push((format!("{point}@{member}"), GroupPlan::Completes));
        }
        cases.push((format!("{point}@member[2]"), GroupPlan::FirstFails));
    }
    for point in ["after_compensation_intent", "after_compensation_effect"] {
        cases.push((format!("{point}@member[1]"), GroupPlan::LastFails));
        cases.push((format!("{point}@member[3]"), GroupPlan::FirstFails));
    }
    cases.push(("after_intent@finish".into(), GroupPlan::Completes));
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(point, plan)| crash_in_matrix_at("built", point, *plan).err())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!(
        "built saga failpoints: {} crashes, each recovered",
        cases.len()
    );
}

#[test]
fn every_failpoint_fires_and_the_saga_recovers_from_it() {
    let steps = ["step_0", "step_1", "pivot_2", "step_3"];
    let mut cases: Vec<(String, bool)> = vec![
        ("after_start_commit@saga".into(), false),
        ("mid_recovery@saga".into(), false),
    ];
    for point in [
        "before_intent",
        "after_intent",
        "after_effect",
        "after_checkpoint",
    ] {
        cases.extend(steps.iter().map(|s| (format!("{point}@{s}"), false)));
    }
    for point in [
        "before_compensation_intent",
        "after_compensation_intent",
        "after_compensation_effect",
        "after_compensation_checkpoint",
    ] {
        // Only the steps before the pivot are ever compensated.
        cases.extend(steps[..2].iter().map(|s| (format!("{point}@{s}"), true)));
    }
    let named: HashSet<&str> = cases
        .iter()
        .map(|(p, _)| p.split('@').next().unwrap())
        .collect();
    let all: HashSet<&str> = saga_runtime::failpoint::POINTS.iter().copied().collect();
    assert_eq!(named, all, "the matrix covers every failpoint");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(point, fail_pivot)| crash_at(point, *fail_pivot).err())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!(
        "failpoint matrix: {} crashes, each recovered",
        cases.len() + 1
    );
}
