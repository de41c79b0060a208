//! The fleet run shared by `fleet.rs` (SQLite) and `fleet_postgres.rs` (PostgreSQL): several
//! `crash_worker fleet` processes share a store and an effects ledger. The test feeds them
//! generated sagas to start, SIGKILLs a random worker again and again (each respawned, with a new
//! name), SIGSTOPs the worker holding the most sagas for longer than its lease, then SIGCONTs it,
//! and (on PostgreSQL) restarts the database in immediate mode. At the end it checks, from the
//! store and the ledger: no acknowledged saga lost; every saga terminal or parked with a reason;
//! each consistent with its effects (as in `crash.rs`); no history entry after a terminal one;
//! effects of one saga under different owners never overlapping in time and in token order (a
//! stale owner's effect refused by the ledger's fence); the stale writes the store refused,
//! counted; and how long each killed worker's sagas waited to be taken over, which must stay
//! within lease + renewal interval + 1 s.
//!
//! Kills, pauses and restarts never overlap: each waits until the last one's sagas could have
//! been taken over (lease + renewal + 1 s), so that each takeover measured is a kill's alone.

#[path = "crash_checks.rs"]
pub mod checks;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use checks::{seed, worker, Files, Reader};
use rusqlite::Connection;
use serde_json::Value;

/// The lease of every worker; they renew (and look for orphaned sagas) five times per lease.
const LEASE: Duration = Duration::from_millis(2000);
const RENEW: Duration = Duration::from_millis(400);
/// Sagas a worker may have been asked to start and not yet acknowledged.
const OUTSTANDING: usize = 8;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What a worker process said on its standard output.
#[derive(Default)]
struct Heard {
    owner: Option<String>,
    acked: HashSet<u64>,
    fenced: u64,
    lost: u64,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    heard: Arc<Mutex<Heard>>,
    /// Sagas it was asked to start, not yet acknowledged.
    asked: HashSet<u64>,
    stopped: bool,
    /// Not killed before this: a worker woken from a pause is left time to report what it
    /// refused.
    spared_until: Instant,
}

impl Worker {
    fn spawn(files: &Files, seed: u64) -> Worker {
        let lease = LEASE.as_millis().to_string();
        let seed = seed.to_string();
        let log = std::fs::File::create(
            files
                .dir
                .path()
                .join(format!("worker-{}.log", fastrand::u64(..))),
        )
        .unwrap();
        let mut child = worker(files, &["fleet", &seed, &lease], None)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let heard = Arc::new(Mutex::new(Heard::default()));
        let stdout = child.stdout.take().unwrap();
        let listener = heard.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut heard = listener.lock().unwrap();
                match line.split_once(' ') {
                    Some(("OWNER", owner)) => heard.owner = Some(owner.to_owned()),
                    Some(("ACK", i)) => drop(heard.acked.insert(i.parse().unwrap())),
                    Some(("FENCED", n)) => heard.fenced = n.parse().unwrap(),
                    Some(("LOST", n)) => heard.lost = n.parse().unwrap(),
                    _ => {}
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        Worker {
            child,
            stdin,
            heard,
            asked: HashSet::new(),
            stopped: false,
            spared_until: Instant::now(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn owner(&self) -> Option<String> {
        self.heard.lock().unwrap().owner.clone()
    }

    /// Forgets what it acknowledged; returns it.
    fn take_acked(&mut self) -> HashSet<u64> {
        let acked = std::mem::take(&mut self.heard.lock().unwrap().acked);
        self.asked.retain(|i| !acked.contains(i));
        acked
    }

    fn ask(&mut self, i: u64) {
        // A worker that died since is found out when it is reaped.
        if writeln!(self.stdin, "{i}").is_ok() {
            self.asked.insert(i);
        }
    }
}

fn signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// A worker paused with SIGSTOP: until when, and the sagas it held.
struct Pause {
    pid: i32,
    at_ms: i64,
    until: Instant,
    held: Vec<String>,
}

/// Whether a write transaction on the database at `path` can begin at once (no other process
/// holds its write lock).
fn writable(path: &std::path::Path) -> bool {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_millis(200)).unwrap();
    let free = conn.execute_batch("BEGIN IMMEDIATE").is_ok();
    if free {
        conn.execute_batch("ROLLBACK").unwrap();
    }
    free
}

/// Whether another worker resumed saga `id` between the two times.
fn resumed_between(store: &Reader, id: &str, from_ms: i64, to_ms: i64) -> bool {
    store.history(id).iter().any(|event| {
        let ms = event_ms(event);
        event["kind"]["event"] == "saga_resumed" && ms >= from_ms && ms <= to_ms
    })
}

/// An event's time, in ms since the epoch: stored as nanoseconds (SQLite since schema version
/// 7, and in its short form since 8) or as serde's `SystemTime` (PostgreSQL).
fn event_ms(event: &Value) -> i64 {
    let at = &event["at"];
    match at.as_u64() {
        Some(nanos) => (nanos / 1_000_000) as i64,
        None => {
            at["secs_since_epoch"].as_i64().unwrap() * 1000
                + at["nanos_since_epoch"].as_i64().unwrap() / 1_000_000
        }
    }
}

/// A kill: when, and the sagas the killed worker held.
struct Kill {
    at_ms: i64,
    held: Vec<String>,
}

/// The scale and the disturbances of a run.
pub struct Fleet {
    pub sagas: u64,
    pub kills: u64,
    pub workers: usize,
    /// Pauses past the lease to make, at least one of them biting (another worker takes over a
    /// saga of the paused one).
    pub pauses: u64,
    /// Database restarts in immediate mode (PostgreSQL only).
    pub restarts: u64,
}

pub fn run_fleet(files: Files, fleet: Fleet) {
    let Fleet {
        sagas,
        kills,
        workers: worker_count,
        pauses: pauses_wanted,
        restarts: restarts_wanted,
    } = fleet;
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut workers: Vec<Worker> = (0..worker_count)
        .map(|_| Worker::spawn(&files, seed))
        .collect();
    let store = files.reader();
    let mut queue: VecDeque<u64> = (0..sagas).collect();
    let mut acked: HashSet<u64> = HashSet::new();
    let mut kill_log: Vec<Kill> = Vec::new();
    let mut fenced_by_dead: u64 = 0;
    let mut lost_by_dead: u64 = 0;
    let started = Instant::now();
    // Starting is paced over the kills (about 300 ms apart), so that they land while sagas run.
    let pace = Duration::from_millis(300 * kills.max(1));
    let mut next_kill = started + Duration::from_millis(rng.u64(100..500));
    // The worker paused now, by process id (the list of workers changes as they are replaced).
    let mut paused: Option<Pause> = None;
    // Sagas of paused workers that others took over during the pause.
    let mut taken_while_paused = 0;
    let mut pauses = 0;
    let mut blocked_pauses = 0;
    // A fifth of the sagas is held back until a pause has bitten: a pause needs sagas in flight,
    // and the run must not finish them all before it. When a pause is due and no worker holds a
    // saga, a few of them go out and the pause is tried again once they have reached a worker.
    let mut reserve_left = sagas as usize / 5;
    let starved_release = (reserve_left / 16).max(4);
    let mut next_pause_try = started;
    let mut starved_tries = 0;
    // Every saga released and finished with no pause biting: pausing gave up (and the check at
    // the end says so).
    let mut gave_up_pausing = false;
    let mut restarts = 0;
    let mut restarted_in_flight = Vec::new();
    // Restarts and pauses, for the report of a slow takeover.
    let mut disturbances: Vec<(&str, i64)> = Vec::new();
    // The last kill, pause or restart: the next waits until its sagas could be taken over.
    let mut last_kill = started;
    let quiet = LEASE + RENEW + Duration::from_secs(1);
    let deadline = started + Duration::from_secs(600);
    loop {
        assert!(
            Instant::now() < deadline,
            "the fleet did not finish starting"
        );
        let paused_enough = pauses >= pauses_wanted && taken_while_paused > 0;
        let pausing_over = paused_enough || pauses >= 8 || blocked_pauses >= 200 || gave_up_pausing;
        let reserve = match pausing_over {
            true => 0,
            false => reserve_left,
        };
        let released = (sagas as u128 * started.elapsed().as_millis() / pace.as_millis().max(1))
            .min((sagas as usize - reserve) as u128) as usize;
        for w in &mut workers {
            acked.extend(w.take_acked());
            if let Some(status) = w.child.try_wait().unwrap() {
                let logs: Vec<String> = std::fs::read_dir(files.dir.path())
                    .unwrap()
                    .filter_map(|e| {
                        let path = e.ok()?.path();
                        let text = std::fs::read_to_string(&path).ok()?;
                        (path.extension()? == "log" && text.contains("panic")).then_some(text)
                    })
                    .collect();
                panic!("worker {} exited by itself ({status}): {logs:#?}", w.pid());
            }
        }
        // Feed the workers that run, up to OUTSTANDING each, in the paced order.
        let mut fed = sagas as usize - queue.len();
        for w in workers.iter_mut().filter(|w| !w.stopped) {
            while w.asked.len() < OUTSTANDING && fed < released.max(1) {
                let Some(i) = queue.pop_front() else { break };
                if !acked.contains(&i) {
                    w.ask(i);
                }
                fed += 1;
            }
        }
        let kills_done = kill_log.len() as u64;
        // The pauses spread over the kills, until enough were made and one has bitten; no kill
        // near a pause: a worker paused while it holds SQLite's write lock stops every worker,
        // and nothing could be taken over until it ends.
        let pausing = !pausing_over && kills_done >= kills * (pauses + 1) / (pauses_wanted + 1);
        // The restarts spread over the kills likewise, away from kills and pauses.
        // With sagas in flight, unless none has been for a few seconds.
        let restart_due = restarts < restarts_wanted
            && kills_done >= kills * (restarts + 1) / (restarts_wanted + 1)
            && paused.is_none()
            && !pausing
            && last_kill.elapsed() > quiet;
        if restart_due && (store.unfinished() > 0 || last_kill.elapsed() > quiet * 3) {
            let in_flight = store.unfinished();
            disturbances.push(("restart", now_ms()));
            saga_tests::restart_postgres();
            eprintln!(
                "fleet: PostgreSQL restarted in immediate mode with {in_flight} sagas in flight"
            );
            restarted_in_flight.push(in_flight);
            restarts += 1;
            last_kill = Instant::now();
            next_kill = Instant::now() + quiet;
            continue;
        }
        if kills_done < kills && Instant::now() >= next_kill && paused.is_none() && !pausing {
            let candidates: Vec<usize> = (0..workers.len())
                .filter(|&i| !workers[i].stopped && workers[i].owner().is_some())
                .filter(|&i| workers[i].spared_until <= Instant::now())
                .collect();
            // A worker that holds sagas, so that the kill has takeovers to measure (sagas are
            // short: most moments a worker holds none); any worker once none has for a second.
            let holding: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| {
                    let owner = workers[i].owner().unwrap_or_default();
                    !store.held_by(&owner, now_ms()).is_empty()
                })
                .collect();
            let waited = next_kill.elapsed() > Duration::from_secs(1);
            let pool = match (holding.is_empty(), waited) {
                (false, _) => holding,
                (true, true) => candidates,
                (true, false) => Vec::new(),
            };
            if let Some(&victim) = pool.get(rng.usize(0..pool.len().max(1))) {
                let owner = workers[victim].owner().unwrap();
                let mut held = store.held_by(&owner, now_ms());
                let at_ms = now_ms();
                // SIGKILL: no destructor, no flush, no lease given back.
                workers[victim].child.kill().unwrap();
                workers[victim].child.wait().unwrap();
                // A claim whose commit the database received as the worker died still commits:
                // the dead worker holds those sagas too, for a lease, without running them.
                std::thread::sleep(Duration::from_millis(50));
                for id in store.held_by(&owner, now_ms()) {
                    if !held.contains(&id) {
                        held.push(id);
                    }
                }
                let mut dead = workers.remove(victim);
                acked.extend(dead.take_acked());
                fenced_by_dead += dead.heard.lock().unwrap().fenced;
                lost_by_dead += dead.heard.lock().unwrap().lost;
                // What it had not acknowledged goes to another worker (starting one twice is
                // harmless: the second start finds the first).
                queue.extend(dead.asked.drain());
                kill_log.push(Kill { at_ms, held });
                last_kill = Instant::now();
                workers.push(Worker::spawn(&files, seed));
                next_kill = Instant::now() + Duration::from_millis(rng.u64(100..500));
            }
        }
        // SIGSTOP the worker holding the most sagas, for longer than its lease: the others
        // take its sagas over, and it must not go on with them when it wakes. A worker
        // paused while it holds SQLite's write lock stops every worker instead, and nothing
        // is taken over: then it is tried again, a few times at most.
        if pausing
            && paused.is_none()
            && last_kill.elapsed() > quiet
            && Instant::now() >= next_pause_try
        {
            let held: Vec<Vec<String>> = workers
                .iter()
                .map(|w| {
                    w.owner()
                        .map_or(Vec::new(), |o| store.held_by(&o, now_ms()))
                })
                .collect();
            let (i, most) = held
                .into_iter()
                .enumerate()
                .max_by_key(|(_, h)| h.len())
                .unwrap();
            let idle = queue.is_empty() && workers.iter().all(|w| w.asked.is_empty());
            if most.is_empty() && reserve_left == 0 && idle && acked.len() as u64 == sagas {
                gave_up_pausing = true;
            } else if most.is_empty() {
                // Tried again once the released sagas have reached a worker (they run for tens
                // of milliseconds at least), before they could all have finished.
                reserve_left = reserve_left.saturating_sub(starved_release);
                starved_tries += 1;
                next_pause_try = Instant::now() + Duration::from_millis(30);
            } else {
                signal(workers[i].pid(), "-STOP");
                // Stopped while holding a write lock (the store's or the ledger's), it would stall
                // every worker and nothing could be taken over: woken at once, tried again.
                let store_locked = files.postgres.is_none() && !writable(&files.store);
                if store_locked || !writable(&files.ledger) {
                    signal(workers[i].pid(), "-CONT");
                    blocked_pauses += 1;
                    continue;
                }
                workers[i].stopped = true;
                pauses += 1;
                paused = Some(Pause {
                    pid: workers[i].pid(),
                    at_ms: now_ms(),
                    until: Instant::now() + LEASE * 2 + Duration::from_millis(500),
                    held: most,
                });
            }
        }
        if let Some(pause) = paused.take_if(|p| Instant::now() >= p.until) {
            // Counted before it wakes: what others resumed while it was stopped.
            let now = now_ms();
            taken_while_paused += pause
                .held
                .iter()
                .filter(|id| resumed_between(&store, id, pause.at_ms, now))
                .count();
            signal(pause.pid, "-CONT");
            disturbances.push(("pause", pause.at_ms));
            disturbances.push(("continue", now_ms()));
            // No kill right after either: the woken worker's backlog meets the store first.
            next_kill = Instant::now() + quiet;
            last_kill = Instant::now();
            for w in workers.iter_mut().filter(|w| w.pid() == pause.pid) {
                w.stopped = false;
                w.spared_until = Instant::now() + LEASE;
            }
        }
        let all_fed = queue.is_empty() && workers.iter().all(|w| w.asked.is_empty());
        if all_fed
            && acked.len() as u64 == sagas
            && kill_log.len() as u64 >= kills
            && restarts >= restarts_wanted
            && paused.is_none()
            && pausing_over
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every saga terminal.
    let drained = Instant::now() + Duration::from_secs(300);
    loop {
        let unfinished = store.unfinished();
        if unfinished == 0 {
            break;
        }
        assert!(
            Instant::now() < drained,
            "{unfinished} sagas never finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(files.stop_file(), "").unwrap();
    let (mut fenced_by_live, mut lost_by_live) = (0, 0);
    for mut w in workers {
        let status = w.child.wait().unwrap();
        assert!(status.success(), "a worker failed: {status}");
        fenced_by_live += w.heard.lock().unwrap().fenced;
        lost_by_live += w.heard.lock().unwrap().lost;
    }
    files.integrity_ok();

    // Nothing lost, everything terminal and consistent with its effects.
    let (sagas_stored, reapplied) = checks::check_every_saga(&files, seed, sagas);
    let histories = store.histories();
    for (id, history) in &histories {
        let end = history.iter().position(is_terminal);
        if let Some(end) = end {
            assert_eq!(
                end + 1,
                history.len(),
                "{id}: history went on after its terminal entry: {:?}",
                &history[end..]
            );
        }
    }
    let (refused, owners) = check_owners(&files);
    let latencies = takeovers(&kill_log, &histories);
    let stale = fenced_by_dead + fenced_by_live;
    let lost = lost_by_dead + lost_by_live;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for saga in sagas_stored.values() {
        *by_status
            .entry(saga.status["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    eprintln!(
        "fleet: {sagas} sagas, {worker_count} workers, {} kills, {restarts} database restarts \
         (sagas in flight: {restarted_in_flight:?}), \
         {pauses} pauses past the lease \
         ({taken_while_paused} sagas of the paused worker taken over meanwhile; {blocked_pauses} \
         pauses undone at once, the worker holding a write lock; {starved_tries} found no worker \
         holding a saga); final statuses {by_status:?}; {reapplied} effects \
         re-applied (deduplicated by key); {owners} sagas ran under more than one owner; stale \
         writes refused by the store: {stale}; runs stopped on a lost lease: {lost}; stale \
         effects refused by the ledger's fence: {refused}",
        kill_log.len()
    );
    if std::env::var_os("FLEET_LOG").is_some() {
        for entry in std::fs::read_dir(files.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                eprint!("{}", std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    assert!(
        taken_while_paused > 0,
        "in {pauses} pauses no other worker took over a saga of the paused one (pausing gave \
         up, every saga finished: {gave_up_pausing})"
    );
    // Each saga taken over from the paused worker: its run there ended on a refused write or a
    // lease found lost, never by going on.
    assert!(
        stale + lost >= taken_while_paused as u64,
        "{taken_while_paused} sagas were taken over from the paused worker, but only {stale} \
         stale writes were refused and {lost} lost leases seen"
    );
    report_takeovers(&latencies);
    let bound = (LEASE + RENEW + Duration::from_secs(1)).as_millis() as i64;
    let worst = latencies.iter().copied().max().unwrap_or(0);
    if worst > bound {
        let started_ms = kill_log.first().map_or(0, |k| k.at_ms);
        for kill in &kill_log {
            let slow = takeovers(std::slice::from_ref(kill), &histories);
            if slow.last().is_some_and(|&ms| ms > bound) {
                eprintln!(
                    "fleet: the kill at +{} ms held {} sagas, taken over after {slow:?} ms; \
                     restarts and pauses at {:?}",
                    kill.at_ms - started_ms,
                    kill.held.len(),
                    disturbances
                        .iter()
                        .map(|(what, at)| format!("{what} +{} ms", at - started_ms))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
    assert!(!latencies.is_empty(), "no killed worker held a saga");
    assert!(
        worst <= bound,
        "a killed worker's saga waited {worst} ms to be taken over (bound {bound} ms)"
    );
}

fn is_terminal(event: &Value) -> bool {
    matches!(
        event["kind"]["event"].as_str(),
        Some("saga_completed" | "saga_compensated" | "saga_failed" | "saga_parked")
    )
}

/// From the ledger's attempts: one process per token, and effects of different owners of a saga
/// never overlapping, in token order. Returns the effects the fence refused, and how many sagas
/// ran under more than one owner.
fn check_owners(files: &Files) -> (u64, usize) {
    let conn = Connection::open(&files.ledger).unwrap();
    let mut statement = conn
        .prepare("SELECT saga, pid, token, started_ms, ended_ms, outcome FROM attempts")
        .unwrap();
    type Span = (i64, i64, i64);
    let mut spans: HashMap<String, BTreeMap<i64, Span>> = HashMap::new();
    let mut refused = 0;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .unwrap();
    for row in rows {
        let (saga, pid, token, start, end, outcome) = row.unwrap();
        if outcome == "refused" {
            refused += 1;
            continue;
        }
        let span = spans
            .entry(saga.clone())
            .or_default()
            .entry(token)
            .or_insert((pid, start, end));
        assert_eq!(span.0, pid, "{saga}: token {token} used by two processes");
        span.1 = span.1.min(start);
        span.2 = span.2.max(end);
    }
    let mut shared = 0;
    for (saga, by_token) in &spans {
        shared += usize::from(by_token.len() > 1);
        let spans: Vec<(&i64, &Span)> = by_token.iter().collect();
        for pair in spans.windows(2) {
            let ((older, (_, _, older_end)), (newer, (_, newer_start, _))) = (pair[0], pair[1]);
            assert!(
                older_end <= newer_start,
                "{saga}: an effect under token {older} ended at {older_end}, after one under \
                 token {newer} started at {newer_start}"
            );
        }
    }
    (refused, shared)
}

/// For each saga a killed worker held, how long after the kill another worker took it over
/// (ms): when it resumed it, or, when the worker that took it was itself killed before it
/// recorded the resumption, when that worker was killed holding it (it took the saga before).
fn takeovers(kills: &[Kill], histories: &HashMap<String, Vec<Value>>) -> Vec<i64> {
    let mut held_at: HashMap<&str, Vec<i64>> = HashMap::new();
    for kill in kills {
        for id in &kill.held {
            held_at.entry(id).or_default().push(kill.at_ms);
        }
    }
    let mut latencies = Vec::new();
    for kill in kills {
        for id in &kill.held {
            let resumed = histories[id].iter().find_map(|event| {
                let ms = event_ms(event);
                (event["kind"]["event"] == "saga_resumed" && ms >= kill.at_ms).then_some(ms)
            });
            // A saga that ended before the kill landed was not waiting for anyone.
            let Some(resumed) = resumed else { continue };
            let held_by_next_victim = held_at[id.as_str()]
                .iter()
                .copied()
                .find(|&at| at > kill.at_ms && at < resumed);
            latencies.push(held_by_next_victim.unwrap_or(resumed) - kill.at_ms);
        }
    }
    latencies.sort_unstable();
    latencies
}

fn report_takeovers(latencies: &[i64]) {
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    if latencies.is_empty() {
        return;
    }
    eprintln!(
        "fleet: {} sagas of killed workers taken over after min {} ms, median {} ms, p90 {} ms, \
         p99 {} ms, max {} ms (lease {} ms, renewal every {} ms)",
        latencies.len(),
        latencies[0],
        at(0.5),
        at(0.9),
        at(0.99),
        latencies[latencies.len() - 1],
        LEASE.as_millis(),
        RENEW.as_millis()
    );
}
