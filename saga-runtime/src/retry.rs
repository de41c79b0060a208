//! Backoff between attempts.
//!
//! The wait after failed attempt `n` (from 1) is `base * 2^(n-1)`, capped (default cap 30 s), then
//! jittered so that many sagas failing together do not retry together. `base` is the step's
//! `backoff` (default 100 ms); `backoff = "0s"` retries at once.

use std::time::Duration;

/// How the computed delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Jitter {
    /// Exactly `base * 2^(n-1)`, capped. Deterministic, for tests.
    None,
    /// Uniform in `[d/2, d]` ("equal jitter"): keeps the exponential growth visible.
    #[default]
    Equal,
    /// Uniform in `[0, d]` ("full jitter").
    Full,
}

/// Engine-wide backoff settings; the base comes from each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// Upper bound of any single wait.
    pub cap: Duration,
    /// Randomisation.
    pub jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            cap: Duration::from_secs(30),
            jitter: Jitter::Equal,
        }
    }
}

impl Backoff {
    /// The wait after failed attempt `attempt` (from 1) of a step with backoff base `base`.
    pub fn delay(&self, base: Duration, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let nominal = base.saturating_mul(1u32 << exponent).min(self.cap);
        let jittered = match self.jitter {
            Jitter::None => return nominal,
            Jitter::Equal => nominal / 2 + nominal.mul_f64(fastrand::f64() / 2.0),
            Jitter::Full => nominal.mul_f64(fastrand::f64()),
        };
        // Timers have millisecond resolution: announce the wait that will actually happen.
        if nominal >= Duration::from_millis(1) {
            Duration::from_millis(jittered.as_millis() as u64)
        } else {
            jittered
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_and_capped() {
        let b = Backoff {
            cap: Duration::from_secs(1),
            jitter: Jitter::None,
        };
        let base = Duration::from_millis(100);
        let delays: Vec<_> = (1..=6).map(|n| b.delay(base, n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(base, u32::MAX), Duration::from_secs(1));
        assert_eq!(b.delay(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn equal_jitter_stays_in_upper_half() {
        let b = Backoff {
            cap: Duration::from_secs(30),
            jitter: Jitter::Equal,
        };
        for _ in 0..1000 {
            let d = b.delay(Duration::from_millis(100), 3);
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
        }
    }
}
