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
