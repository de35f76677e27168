//! One reading of the clocks: a monotonic instant (tokio's, so tests run on paused time)
//! and the wall-clock time that records carry.
//!
//! The dashboard's event loop reads the clocks once per event and passes the reading to
//! `update` and `view`, which never read a clock themselves. Nothing here does I/O.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The time an event is handled or a frame is drawn at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// For durations, windows and cooldowns.
    pub now: Instant,
    /// For timestamps people read.
    pub wall: SystemTime,
}

impl Clock {
    /// Reads both clocks now.
    pub fn read() -> Self {
        Self { now: Instant::now(), wall: SystemTime::now() }
    }

    /// A fixed reading (tests): `now` with the wall clock at `wall_unix_s`.
    pub fn at(now: Instant, wall_unix_s: u64) -> Self {
        Self { now, wall: SystemTime::UNIX_EPOCH + Duration::from_secs(wall_unix_s) }
    }

    /// The same reading, `elapsed` later on both clocks.
    pub fn later(self, elapsed: Duration) -> Self {
        Self { now: self.now + elapsed, wall: self.wall + elapsed }
    }

    /// Wall-clock time, RFC 3339 with milliseconds (`2026-11-26T14:00:00.000Z`).
    pub fn timestamp(&self) -> String {
        humantime::format_rfc3339_millis(self.wall).to_string()
    }

    /// Wall-clock time to the second, for console lines.
    pub fn timestamp_seconds(&self) -> String {
        humantime::format_rfc3339_seconds(self.wall).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn timestamps_follow_the_wall_clock_reading() {
        let clock = Clock::at(Instant::now(), 1_795_701_600);
        assert_eq!(clock.timestamp(), "2026-11-26T14:00:00.000Z");
        let later = clock.later(Duration::from_millis(1500));
        assert_eq!(later.timestamp(), "2026-11-26T14:00:01.500Z");
        assert_eq!(later.now - clock.now, Duration::from_millis(1500));
    }
}
