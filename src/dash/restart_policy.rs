//! When the supervisor restarts a child: exponential backoff, and the sliding window of
//! recent restarts that tells a crash loop. Pure logic on tokio's clock; no processes.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Restart behaviour.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Restart automatically after an unexpected exit.
    pub automatic: bool,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Restarts allowed within `window` before giving up.
    pub max_restarts: usize,
    pub window: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Time the child has to become ready.
    pub startup_timeout: Duration,
}

impl RestartPolicy {
    /// The `restart:` section, with the monitoring section's start-up timeout.
    pub fn from_config(config: &crate::config::Config) -> Self {
        let r = &config.restart;
        Self {
            automatic: r.automatic,
            initial_backoff: r.initial_backoff_s.0,
            max_backoff: r.max_backoff_s.0,
            max_restarts: r.max_restarts,
            window: r.window_s.0,
            grace: r.grace_s.0,
            startup_timeout: config.monitoring.startup_timeout_s.0,
        }
    }

    /// Backoff before restart number `attempt` (0-based): initial × 2^attempt, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Restarts within the sliding window.
#[derive(Debug, Clone, Default)]
pub struct RestartHistory {
    restarts: VecDeque<Instant>,
}

impl RestartHistory {
    /// Records a restart at `now` if the policy still allows one; false means crash loop.
    pub fn try_record(&mut self, now: Instant, policy: &RestartPolicy) -> bool {
        while self.restarts.front().is_some_and(|t| now.saturating_duration_since(*t) > policy.window) {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= policy.max_restarts {
            return false;
        }
        self.restarts.push_back(now);
        true
    }

    /// Restarts in the current window (after the last `try_record`).
    pub fn recent(&self) -> usize {
        self.restarts.len()
    }

    pub fn clear(&mut self) {
        self.restarts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            automatic: true,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_restarts: 5,
            window: Duration::from_secs(600),
            grace: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_to_sixty() {
        let p = policy();
        let delays: Vec<u64> = (0..9).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn more_than_five_restarts_in_ten_minutes_is_a_crash_loop() {
        let p = policy();
        let mut history = RestartHistory::default();
        for _ in 0..5 {
            assert!(history.try_record(Instant::now(), &p));
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        // Sixth restart within 10 minutes of the first: refused.
        assert!(!history.try_record(Instant::now(), &p));
        // Once the oldest restart leaves the window, one more is allowed.
        tokio::time::advance(Duration::from_secs(301)).await;
        assert!(history.try_record(Instant::now(), &p));
    }
}
