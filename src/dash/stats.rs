//! Probe statistics: a rolling window (default 5 min) and whole-session totals.
//!
//! Latencies are kept in microseconds in `hdrhistogram`s (3 significant digits). The window
//! keeps its samples and rebuilds its histogram on demand (a few hundred samples at most),
//! so old samples really leave it. Pure data: no I/O, no clocks of its own — callers pass
//! `now`, which makes windows testable with paused tokio time.

use std::collections::VecDeque;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// One inference probe as the statistics see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSample {
    pub at: Instant,
    /// Client-measured total latency (also for failures: time until the failure was known).
    pub latency: Duration,
    /// The server's own model time (encoder + decoder), when it answered.
    pub model_time: Option<Duration>,
    pub success: bool,
    /// Caption quality score 0..1, for successful probes with expected keywords.
    pub quality: Option<f64>,
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// What the window or the session looks like now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatsSnapshot {
    pub probes: u64,
    pub successes: u64,
    pub failures: u64,
    /// Failures / probes, 0..1 (0 when there were no probes).
    pub error_rate: f64,
    /// Latency of successful probes; None when none succeeded (nothing was measured).
    pub latency: Option<LatencySummary>,
    /// Server-reported model time of successful probes; None when none reported one.
    pub model_time: Option<LatencySummary>,
    /// Mean quality score of probes that had one.
    pub quality_mean: Option<f64>,
    /// Probes per second over the covered span.
    pub throughput_per_s: f64,
}

/// An auto-resizing histogram with three significant digits.
#[expect(clippy::expect_used, reason = "hdrhistogram only rejects sigfig > 5; 3 is a constant")]
fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("sigfig 3 is valid")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn summarize(histogram: &Histogram<u64>) -> Option<LatencySummary> {
    if histogram.is_empty() {
        return None;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Some(LatencySummary {
        count: histogram.len(),
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p95_ms: ms(histogram.value_at_quantile(0.95)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        max_ms: ms(histogram.max()),
        mean_ms: histogram.mean() / 1000.0,
    })
}

/// Accumulates everything since the session started.
#[derive(Debug, Clone)]
pub struct SessionStats {
    started: Instant,
    probes: u64,
    successes: u64,
    latency: Histogram<u64>,
    model_time: Histogram<u64>,
    quality_sum: f64,
    quality_count: u64,
}

impl SessionStats {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            probes: 0,
            successes: 0,
            latency: new_histogram(),
            model_time: new_histogram(),
            quality_sum: 0.0,
            quality_count: 0,
        }
    }

    pub fn record(&mut self, sample: &ProbeSample) {
        self.probes += 1;
        if sample.success {
            self.successes += 1;
            // Auto-resizing histograms accept any u64; nothing to handle.
            let _ = self.latency.record(micros(sample.latency));
            if let Some(model) = sample.model_time {
                let _ = self.model_time.record(micros(model));
            }
        }
        if let Some(quality) = sample.quality {
            self.quality_sum += quality;
            self.quality_count += 1;
        }
    }

    /// Successful probes so far.
    pub fn successes(&self) -> u64 {
        self.successes
    }

    pub fn snapshot(&self, now: Instant) -> StatsSnapshot {
        snapshot_of(
            self.probes,
            self.successes,
            &self.latency,
            &self.model_time,
            (self.quality_count > 0).then(|| self.quality_sum / self.quality_count as f64),
            now.saturating_duration_since(self.started),
        )
    }
}

fn snapshot_of(
    probes: u64,
    successes: u64,
    latency: &Histogram<u64>,
    model_time: &Histogram<u64>,
    quality_mean: Option<f64>,
    span: Duration,
) -> StatsSnapshot {
    let failures = probes - successes;
    StatsSnapshot {
        probes,
        successes,
        failures,
        error_rate: if probes == 0 { 0.0 } else { failures as f64 / probes as f64 },
        latency: summarize(latency),
        model_time: summarize(model_time),
        quality_mean,
        throughput_per_s: if span.is_zero() { 0.0 } else { probes as f64 / span.as_secs_f64() },
    }
}

/// The samples of the last `window`.
#[derive(Debug, Clone)]
pub struct RollingWindow {
    window: Duration,
    samples: VecDeque<ProbeSample>,
}

impl RollingWindow {
    pub fn new(window: Duration) -> Self {
        Self { window, samples: VecDeque::new() }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn record(&mut self, sample: ProbeSample) {
        self.samples.push_back(sample);
    }

    /// Drops samples older than the window.
    pub fn prune(&mut self, now: Instant) {
        while self.samples.front().is_some_and(|s| now.saturating_duration_since(s.at) > self.window) {
            self.samples.pop_front();
        }
    }

    /// Samples currently in the window, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &ProbeSample> {
        self.samples.iter()
    }

    /// Statistics of the samples inside the window at `now` (older ones are skipped, not
    /// removed: [`Self::prune`] does that).
    pub fn snapshot(&self, now: Instant) -> StatsSnapshot {
        let in_window = || self.samples.iter().filter(move |s| now.saturating_duration_since(s.at) <= self.window);
        let mut latency = new_histogram();
        let mut model_time = new_histogram();
        let (mut probes, mut successes, mut quality_sum, mut quality_count) = (0u64, 0, 0.0, 0u64);
        for sample in in_window() {
            probes += 1;
            if sample.success {
                successes += 1;
                let _ = latency.record(micros(sample.latency));
                if let Some(model) = sample.model_time {
                    let _ = model_time.record(micros(model));
                }
            }
            if let Some(quality) = sample.quality {
                quality_sum += quality;
                quality_count += 1;
            }
        }
        let span = in_window().next().map_or(Duration::ZERO, |first| now.saturating_duration_since(first.at));
        snapshot_of(
            probes,
            successes,
            &latency,
            &model_time,
            (quality_count > 0).then(|| quality_sum / quality_count as f64),
            span.min(self.window),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, latency_ms: u64, success: bool) -> ProbeSample {
        ProbeSample {
            at,
            latency: Duration::from_millis(latency_ms),
            model_time: success.then(|| Duration::from_millis(latency_ms / 2)),
            success,
            quality: success.then_some(1.0),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn percentiles_error_rate_and_quality() {
        let start = Instant::now();
        let mut window = RollingWindow::new(Duration::from_secs(300));
        let mut session = SessionStats::new(start);
        for i in 1..=100u64 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let s = sample(Instant::now(), i * 10, i % 10 != 0);
            window.record(s);
            session.record(&s);
        }
        let now = Instant::now();
        let snap = window.snapshot(now);
        assert_eq!((snap.probes, snap.successes, snap.failures), (100, 90, 10));
        assert!((snap.error_rate - 0.10).abs() < 1e-9);
        // Successful latencies are 10..990 ms without multiples of 100: P50 ≈ 500, P95 ≈ 950.
        assert!((snap.latency.unwrap().p50_ms - 500.0).abs() <= 15.0, "{:?}", snap.latency);
        assert!((snap.latency.unwrap().p95_ms - 950.0).abs() <= 15.0, "{:?}", snap.latency);
        assert!((snap.latency.unwrap().max_ms - 990.0).abs() <= 1.0);
        assert!((snap.model_time.unwrap().p50_ms - 250.0).abs() <= 10.0);
        assert_eq!(snap.quality_mean, Some(1.0));
        assert!((snap.throughput_per_s - 100.0 / 99.0).abs() < 0.02, "{}", snap.throughput_per_s);
        assert_eq!(session.snapshot(now).probes, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn old_samples_leave_the_window_but_not_the_session() {
        let start = Instant::now();
        let mut window = RollingWindow::new(Duration::from_secs(60));
        let mut session = SessionStats::new(start);
        for _ in 0..5 {
            let s = sample(Instant::now(), 8000, true);
            window.record(s);
            session.record(&s);
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        let s = sample(Instant::now(), 100, true);
        window.record(s);
        session.record(&s);
        let snap = window.snapshot(Instant::now());
        assert_eq!(snap.probes, 1);
        assert!((snap.latency.unwrap().p95_ms - 100.0).abs() < 1.0);
        let total = session.snapshot(Instant::now());
        assert_eq!(total.probes, 6);
        assert!(total.latency.unwrap().p95_ms > 7900.0);
    }

    #[test]
    fn empty_window_is_all_zero() {
        let window = RollingWindow::new(Duration::from_secs(60));
        let snap = window.snapshot(Instant::now());
        assert_eq!(snap, StatsSnapshot::default());
    }
}
