//! Fault injection for rehearsing alerts (`capwatch serve --chaos`): for a while, and for a
//! share of requests, the server is slow, fails, hangs, crashes, writes wrong captions, decodes
//! slowly or reports itself unready.
//!
//! Faults are set with `POST /chaos` (JSON [`FaultSpec`], in `crate::protocol`), listed with `GET /chaos` and cleared
//! with `DELETE /chaos`, only from loopback and only when the server was started with
//! `--chaos`; otherwise those routes answer 404 like any unknown path. Each fault ends by
//! itself after `duration_s`. The handlers ask this module what to do; it decides which
//! requests a fault hits (exactly `share` of them, spread evenly), counts them in
//! `/metrics` and logs each fault's start and end. It never touches the model.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::metrics::{FaultLabels, Metrics};
use crate::engine::StepDelay;
use crate::protocol::faults::{ActiveFault, FaultKind, FaultSpec};

/// How often a hung request checks whether its fault has ended.
const HANG_POLL: Duration = Duration::from_millis(50);
/// Words a `garbage` fault writes instead of the caption.
const GARBAGE_WORDS: &[&str] = &["zebra", "violin", "umbrella", "seventeen", "marmalade", "glacier", "accordion"];

struct Fault {
    id: u64,
    spec: FaultSpec,
    ends_at: Instant,
    /// Requests the fault was asked about, to hit exactly `share` of them.
    seen: AtomicU64,
    hits: AtomicU64,
}

impl Fault {
    /// Whether the next request is hit: request `n` is when `floor((n + 1) · share)` steps up,
    /// so exactly `share` of any run of requests are, evenly spread.
    fn hits_next(&self) -> Option<u64> {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let share = self.spec.share;
        let hit = ((n + 1) as f64 * share).floor() > (n as f64 * share).floor();
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit.then_some(n)
    }

    fn describe(&self, now: Instant) -> ActiveFault {
        ActiveFault {
            id: self.id,
            spec: self.spec.clone(),
            remaining_s: (self.ends_at.saturating_duration_since(now).as_secs_f64() * 1000.0).round() / 1000.0,
            hits: self.hits.load(Ordering::Relaxed),
        }
    }
}

/// The faults in force, shared by the handlers.
pub struct Chaos {
    faults: Mutex<Vec<Arc<Fault>>>,
    next_id: AtomicU64,
    step_delay: StepDelay,
}

impl Chaos {
    /// `step_delay` is the engine's: `slow_decoder` sets it.
    pub fn new(step_delay: StepDelay) -> Self {
        Self { faults: Mutex::new(Vec::new()), next_id: AtomicU64::new(1), step_delay }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Fault>>> {
        // A panic while holding this lock leaves a plain Vec behind; it is still usable.
        self.faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a fault; it ends by itself at its deadline (see [`Self::expire`]).
    pub fn inject(&self, spec: FaultSpec, metrics: &Metrics) -> Result<ActiveFault, String> {
        spec.validate()?;
        let now = Instant::now();
        let fault = Arc::new(Fault {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ends_at: now + Duration::from_secs_f64(spec.duration_s),
            spec,
            seen: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        });
        tracing::warn!(
            fault_id = fault.id,
            kind = fault.spec.kind.name(),
            duration_s = fault.spec.duration_s,
            share = fault.spec.share,
            "chaos fault started"
        );
        self.lock().push(Arc::clone(&fault));
        self.refresh(metrics);
        Ok(fault.describe(now))
    }

    /// Ends the faults whose time is up; returns when the next one ends, if any is left.
    pub fn expire(&self, metrics: &Metrics) -> Option<Instant> {
        let now = Instant::now();
        let ended: Vec<Arc<Fault>> = {
            let mut faults = self.lock();
            let (ended, kept) = faults.drain(..).partition(|f| f.ends_at <= now);
            *faults = kept;
            ended
        };
        for fault in &ended {
            tracing::warn!(
                fault_id = fault.id,
                kind = fault.spec.kind.name(),
                hits = fault.hits.load(Ordering::Relaxed),
                "chaos fault ended"
            );
        }
        if !ended.is_empty() {
            self.refresh(metrics);
        }
        self.lock().iter().map(|f| f.ends_at).min()
    }

    /// Ends every fault now; returns them as they were (requests hit included).
    pub fn clear(&self, metrics: &Metrics) -> Vec<ActiveFault> {
        let now = Instant::now();
        let cleared: Vec<Arc<Fault>> = self.lock().drain(..).collect();
        for fault in &cleared {
            tracing::warn!(fault_id = fault.id, kind = fault.spec.kind.name(), "chaos fault cleared");
        }
        self.refresh(metrics);
        cleared.iter().map(|fault| fault.describe(now)).collect()
    }

    /// The faults in force.
    pub fn active(&self) -> Vec<ActiveFault> {
        let now = Instant::now();
        self.lock().iter().filter(|f| f.ends_at > now).map(|f| f.describe(now)).collect()
    }

    /// The newest fault of `kind` in force (for a request answered by `model`, when it is one).
    fn find(&self, kind: FaultKind, model: Option<&str>) -> Option<Arc<Fault>> {
        let now = Instant::now();
        let applies = |f: &Fault| f.spec.model.is_none() || f.spec.model.as_deref() == model;
        self.lock().iter().rev().find(|f| f.spec.kind == kind && f.ends_at > now && applies(f)).cloned()
    }

    /// Whether a fault of `kind` is in force (it hits every request: `hang`, `unready`).
    pub fn is_active(&self, kind: FaultKind, metrics: &Metrics) -> bool {
        let fault = self.find(kind, None);
        if let Some(fault) = &fault {
            fault.hits.fetch_add(1, Ordering::Relaxed);
            metrics.chaos_hits.get_or_create(&FaultLabels { kind: kind.name() }).inc();
        }
        fault.is_some()
    }

    /// The fault of `kind` if it hits this request, with the request's number.
    fn hit(&self, kind: FaultKind, model: &str, metrics: &Metrics) -> Option<(Arc<Fault>, u64)> {
        let fault = self.find(kind, Some(model))?;
        let n = fault.hits_next()?;
        metrics.chaos_hits.get_or_create(&FaultLabels { kind: kind.name() }).inc();
        Some((fault, n))
    }

    /// `latency`: how long to hold this caption request (for `model`) before serving it.
    pub fn added_latency(&self, model: &str, metrics: &Metrics) -> Option<Duration> {
        let (fault, n) = self.hit(FaultKind::Latency, model, metrics)?;
        let spec = &fault.spec;
        let jitter =
            if spec.jitter_ms == 0 { 0 } else { (mix(n) % (2 * spec.jitter_ms + 1)) as i64 - spec.jitter_ms as i64 };
        Some(Duration::from_millis(spec.latency_ms.saturating_add_signed(jitter)))
    }

    /// `errors`: the status to answer this caption request with instead.
    pub fn injected_error(&self, model: &str, metrics: &Metrics) -> Option<u16> {
        self.hit(FaultKind::Errors, model, metrics).map(|(fault, _)| fault.spec.status)
    }

    /// `garbage`: the wrong caption to answer instead of `caption`.
    pub fn garbage(&self, model: &str, caption: &str, metrics: &Metrics) -> Option<String> {
        let (_, n) = self.hit(FaultKind::Garbage, model, metrics)?;
        let words = caption.split_whitespace().count().clamp(2, 8);
        Some(
            (0..words)
                .map(|i| GARBAGE_WORDS[(mix(n + i as u64) % GARBAGE_WORDS.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// `hang`: waits while a hang is in force (returns at once otherwise).
    pub async fn hold_while_hung(&self, metrics: &Metrics) {
        if !self.is_active(FaultKind::Hang, metrics) {
            return;
        }
        while self.find(FaultKind::Hang, None).is_some() {
            tokio::time::sleep(HANG_POLL).await;
        }
    }

    /// Makes the metrics and the engine's step delay match the faults in force.
    fn refresh(&self, metrics: &Metrics) {
        let faults = self.lock();
        for kind in FaultKind::ALL {
            let count = faults.iter().filter(|f| f.spec.kind == kind).count();
            metrics.chaos_active.get_or_create(&FaultLabels { kind: kind.name() }).set(count as i64);
        }
        let delay = faults
            .iter()
            .filter(|f| f.spec.kind == FaultKind::SlowDecoder)
            .map(|f| f.spec.step_delay_ms)
            .max()
            .unwrap_or(0);
        self.step_delay.set(Duration::from_millis(delay));
    }
}

/// Ends faults at their deadlines until the server stops (spawned once with `--chaos`).
pub async fn expire_faults(state: Arc<super::AppState>) {
    let Some(chaos) = state.chaos.as_ref() else { return };
    loop {
        let next = chaos.expire(&state.metrics);
        // Faults injected meanwhile are picked up within a second.
        let wait = next.map_or(Duration::from_secs(1), |at| at.saturating_duration_since(Instant::now()));
        tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
    }
}

/// A well-mixed number from `n` (splitmix64), for jitter and garbage words.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chaos() -> (Chaos, Metrics, StepDelay) {
        let delay = StepDelay::default();
        (Chaos::new(delay.clone()), Metrics::new(), delay)
    }

    #[test]
    fn a_share_hits_exactly_that_share_evenly() {
        let (chaos, metrics, _) = chaos();
        chaos.inject(FaultSpec { share: 0.25, ..FaultSpec::new(FaultKind::Errors) }, &metrics).unwrap();
        let hits: Vec<bool> = (0..8).map(|_| chaos.injected_error("m", &metrics).is_some()).collect();
        assert_eq!(hits, [false, false, false, true, false, false, false, true]);
        assert_eq!(chaos.active()[0].hits, 2);
        assert!(metrics.encode().unwrap().contains("capwatch_chaos_hits_total{kind=\"errors\"} 2"));
    }

    #[test]
    fn faults_end_by_themselves_and_when_cleared() {
        let (chaos, metrics, delay) = chaos();
        let slow = FaultSpec { duration_s: 0.05, step_delay_ms: 30, ..FaultSpec::new(FaultKind::SlowDecoder) };
        chaos.inject(slow, &metrics).unwrap();
        chaos.inject(FaultSpec::new(FaultKind::Unready), &metrics).unwrap();
        assert_eq!(delay.get(), Duration::from_millis(30));
        assert!(metrics.encode().unwrap().contains("capwatch_chaos_active{kind=\"slow_decoder\"} 1"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(chaos.expire(&metrics).is_some(), "unready is left");
        assert_eq!(delay.get(), Duration::ZERO, "the decoder is fast again");
        assert!(chaos.is_active(FaultKind::Unready, &metrics));
        assert_eq!(chaos.clear(&metrics).len(), 1);
        assert!(!chaos.is_active(FaultKind::Unready, &metrics));
        assert!(chaos.active().is_empty());
        assert!(metrics.encode().unwrap().contains("capwatch_chaos_active{kind=\"unready\"} 0"));
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let bad = [
            (FaultSpec { duration_s: 0.0, ..FaultSpec::new(FaultKind::Hang) }, "duration_s"),
            (FaultSpec { share: 1.5, ..FaultSpec::new(FaultKind::Errors) }, "share"),
            (FaultSpec { status: 404, ..FaultSpec::new(FaultKind::Errors) }, "status"),
            (FaultSpec { exit_code: 0, ..FaultSpec::new(FaultKind::Crash) }, "exit_code"),
            (FaultSpec { latency_ms: 10, jitter_ms: 20, ..FaultSpec::new(FaultKind::Latency) }, "jitter_ms"),
        ];
        for (spec, key) in bad {
            assert!(spec.validate().unwrap_err().contains(key), "{key}");
        }
        let json: FaultSpec = serde_json::from_str(r#"{"kind": "slow_decoder", "step_delay_ms": 5}"#).unwrap();
        assert_eq!(json, FaultSpec { step_delay_ms: 5, ..FaultSpec::new(FaultKind::SlowDecoder) });
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind": "meteor"}"#).is_err());
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind": "hang", "lenght": 3}"#).is_err());
    }

    #[test]
    fn latency_jitter_stays_in_its_band_and_garbage_is_other_words() {
        let (chaos, metrics, _) = chaos();
        chaos
            .inject(FaultSpec { latency_ms: 100, jitter_ms: 20, ..FaultSpec::new(FaultKind::Latency) }, &metrics)
            .unwrap();
        let delays: Vec<u128> = (0..50).map(|_| chaos.added_latency("m", &metrics).unwrap().as_millis()).collect();
        assert!(delays.iter().all(|d| (80..=120).contains(d)), "{delays:?}");
        assert!(delays.iter().any(|d| *d != delays[0]), "jitter varies");
        chaos.inject(FaultSpec::new(FaultKind::Garbage), &metrics).unwrap();
        let garbage = chaos.garbage("m", "a small red circle", &metrics).unwrap();
        assert_eq!(garbage.split(' ').count(), 4);
        assert!(!garbage.contains("red") && !garbage.contains("circle"), "{garbage}");
    }

    #[test]
    fn a_fault_for_one_model_spares_the_others() {
        let (chaos, metrics, _) = chaos();
        let canary_only = FaultSpec { model: Some("b".to_owned()), ..FaultSpec::new(FaultKind::Latency) };
        chaos.inject(canary_only, &metrics).unwrap();
        assert_eq!(chaos.added_latency("a", &metrics), None);
        assert_eq!(chaos.added_latency("b", &metrics), Some(Duration::from_millis(1000)));
        assert_eq!(chaos.active()[0].hits, 1);
        let hang = FaultSpec { model: Some("b".to_owned()), ..FaultSpec::new(FaultKind::Hang) };
        assert!(hang.validate().unwrap_err().contains("model applies to"));
    }
}
