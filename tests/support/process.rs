//! Worker processes of the crash tests: run one, read what it acknowledged, kill it with
//! SIGKILL after a while if asked.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Supervises `child` (its stdout piped): collects the `ACK i` lines it prints, and kills it
/// with SIGKILL after `kill_after` if given (no destructor, no flush, like a power cut for the
/// process), else waits up to 5 minutes for it to succeed. Returns the indices it acknowledged
/// and whether it was killed (it may have finished before the kill landed).
pub fn supervise(mut child: Child, kill_after: Option<Duration>) -> (Vec<u64>, bool) {
    let acks = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let stdout = child.stdout.take().expect("stdout piped");
        let acks = acks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(i) = line.strip_prefix("ACK ") {
                    acks.lock().unwrap().push(i.parse::<u64>().unwrap());
                }
            }
        })
    };
    let killed = match kill_after {
        Some(delay) => {
            std::thread::sleep(delay);
            let running = child.try_wait().unwrap().is_none();
            if running {
                child.kill().unwrap();
            }
            let status = child.wait().unwrap();
            assert!(running || status.success(), "the worker failed: {status}");
            running
        }
        None => {
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "the worker failed: {status}");
                    break false;
                }
                assert!(Instant::now() < deadline, "the worker did not finish");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    reader.join().unwrap();
    let acks = acks.lock().unwrap().clone();
    (acks, killed)
}

/// Restarts the local NATS server, as an operator would: stops it (SIGTERM, waiting until it
/// has exited), waits `down`, and starts it again with the same command line, detached (so it
/// outlives the test), then waits until it accepts connections on `127.0.0.1:4222`. Says why
/// when it cannot (no `nats-server` process this user may signal, or it did not come back).
pub fn restart_nats(down: Duration) -> Result<(), String> {
    let (pid, command) = nats_server()?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if !status.success() {
        return Err(format!("cannot signal nats-server (pid {pid}): {status}"));
    }
    let stopped = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        if stopped.elapsed() > Duration::from_secs(30) {
            return Err(format!("nats-server (pid {pid}) did not stop"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(down);
    let (program, args) = command.split_first().ok_or("an empty command line")?;
    let status = std::process::Command::new("start-stop-daemon")
        .args([
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            program,
            "--",
        ])
        .args(args)
        .status()
        .map_err(|e| format!("cannot run start-stop-daemon: {e}"))?;
    if !status.success() {
        return Err(format!("start-stop-daemon failed: {status}"));
    }
    let started = Instant::now();
    while std::net::TcpStream::connect("127.0.0.1:4222").is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            return Err("nats-server did not come back on 127.0.0.1:4222".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The running `nats-server`'s pid and command line.
fn nats_server() -> Result<(u32, Vec<String>), String> {
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let command: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect();
        if command
            .first()
            .is_some_and(|program| program.ends_with("/nats-server"))
        {
            return Ok((pid, command));
        }
    }
    Err("no nats-server process runs on this machine".into())
}
