//! Drift on the server: the profile of every real caption request (probes marked with
//! `X-Capwatch-Probe` are left out) goes into a bounded live window; a reference is frozen from
//! that window (`POST /drift/baseline`, loopback only) and saved to `service.drift.reference`,
//! which is loaded again at start; `GET /drift` and `/metrics` compare the two
//! ([`crate::drift::report`]). The live window is the last `window_requests` requests, and
//! only those of the last `window_minutes` when that is set. A comparison is kept until the
//! window or the reference changes (MMD's permutations cost tens of milliseconds). This module
//! keeps the windows and the file; the tests are pure.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::DriftConfig;
use crate::drift::profile::RequestProfile;
use crate::drift::report::{DriftReport, compare};
use crate::protocol::drift::{DriftStatus, ReferenceInfo};

/// Fewest live requests a reference may be frozen from.
pub const MIN_REFERENCE: usize = 30;
/// Fewest live requests judged against the reference (or the whole window, when it is
/// smaller). Measured: after a restart, with the reference reloaded, a live window of one
/// ordinary request was called drifted (4 of 14 features) in 1 of 6 tries; 2 to 40 requests
/// never were. A verdict comes once the window holds as many requests as a reference needs.
pub const MIN_LIVE: usize = MIN_REFERENCE;

/// A frozen reference, as the file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// When it was frozen (RFC 3339).
    pub created_at: String,
    pub profiles: Vec<RequestProfile>,
}

/// The live window and the reference.
pub struct DriftState {
    window: Mutex<Window>,
    capacity: usize,
    max_age: Option<Duration>,
    drift_share: f64,
    reference: RwLock<Option<Reference>>,
    path: Option<PathBuf>,
    /// The last comparison and what it was made from.
    last: Mutex<Option<(Version, DriftReport)>>,
}

/// The live requests, oldest first, with when each came.
#[derive(Default)]
struct Window {
    profiles: VecDeque<(Instant, RequestProfile)>,
    /// Requests ever recorded (tells a changed window from the same one).
    recorded: u64,
    /// References ever frozen.
    frozen: u64,
}

/// What a comparison was made from: (requests recorded, live size, references frozen).
type Version = (u64, usize, u64);

/// Why a reference could not be frozen or read.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("the live window has {have} requests; a reference needs at least {MIN_REFERENCE}")]
    TooFew { have: usize },
    #[error("cannot write the drift reference {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("cannot read the drift reference {path}: {reason}")]
    Read { path: String, reason: String },
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; it is still usable.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Window {
    /// Drops what is past the count or older than `max_age` at `now`.
    fn evict(&mut self, capacity: usize, max_age: Option<Duration>, now: Instant) {
        while self.profiles.len() > capacity {
            self.profiles.pop_front();
        }
        if let Some(max_age) = max_age {
            while self.profiles.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > max_age) {
                self.profiles.pop_front();
            }
        }
    }
}

impl DriftState {
    /// An empty window; the reference file is read if it exists (a bad file is an error).
    pub fn new(config: &DriftConfig) -> Result<Self, ReferenceError> {
        let reference = match &config.reference {
            Some(path) if path.exists() => Some(read_reference(path)?),
            _ => None,
        };
        Ok(Self {
            window: Mutex::new(Window::default()),
            capacity: config.window_requests.get(),
            max_age: config.window_minutes.map(|m| Duration::from_secs(u64::from(m.get()) * 60)),
            drift_share: config.drift_share.0,
            reference: RwLock::new(reference),
            path: config.reference.clone(),
            last: Mutex::new(None),
        })
    }

    /// Adds one request's profile, dropping the oldest when full.
    pub fn record(&self, profile: RequestProfile) {
        self.record_at(profile, Instant::now());
    }

    fn record_at(&self, profile: RequestProfile, now: Instant) {
        let mut window = lock(&self.window);
        window.profiles.push_back((now, profile));
        window.recorded += 1;
        window.evict(self.capacity, self.max_age, now);
    }

    /// The live window at `now` and its version.
    fn live_at(&self, now: Instant) -> (Vec<RequestProfile>, Version) {
        let mut window = lock(&self.window);
        window.evict(self.capacity, self.max_age, now);
        let live: Vec<RequestProfile> = window.profiles.iter().map(|(_, p)| p.clone()).collect();
        let version = (window.recorded, live.len(), window.frozen);
        (live, version)
    }

    /// Freezes the live window as the reference (and saves it, when a path is configured).
    pub fn freeze(&self, now: String) -> Result<ReferenceInfo, ReferenceError> {
        let (profiles, _) = self.live_at(Instant::now());
        if profiles.len() < MIN_REFERENCE {
            return Err(ReferenceError::TooFew { have: profiles.len() });
        }
        let reference = Reference { created_at: now, profiles };
        if let Some(path) = &self.path {
            write_reference(path, &reference)?;
        }
        let info = self.info(&reference);
        *self.reference.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reference);
        lock(&self.window).frozen += 1;
        Ok(info)
    }

    fn info(&self, reference: &Reference) -> ReferenceInfo {
        ReferenceInfo {
            size: reference.profiles.len(),
            created_at: reference.created_at.clone(),
            path: self.path.as_ref().map(|p| p.display().to_string()),
        }
    }

    /// The live window against the reference, as things stand.
    pub fn status(&self) -> DriftStatus {
        self.status_at(Instant::now())
    }

    fn status_at(&self, now: Instant) -> DriftStatus {
        let (live, version) = self.live_at(now);
        let reference = self.reference.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let judged = !live.is_empty() && live.len() >= MIN_LIVE.min(self.capacity);
        let report = reference.as_ref().filter(|_| judged).map(|reference| {
            let mut last = lock(&self.last);
            match last.as_ref() {
                Some((made_from, report)) if *made_from == version => report.clone(),
                _ => {
                    let report = compare(&reference.profiles, &live, self.drift_share);
                    *last = Some((version, report.clone()));
                    report
                }
            }
        });
        DriftStatus {
            live_size: live.len(),
            window_requests: self.capacity,
            window_minutes: self.max_age.map(|age| (age.as_secs() / 60) as u32),
            reference: reference.as_ref().map(|r| self.info(r)),
            report,
        }
    }
}

fn read_reference(path: &Path) -> Result<Reference, ReferenceError> {
    let fail = |reason: String| ReferenceError::Read { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
}

/// Writes the file whole: a temporary file renamed over the old one.
fn write_reference(path: &Path, reference: &Reference) -> Result<(), ReferenceError> {
    let fail = |source| ReferenceError::Write { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = serde_json::to_string(reference).map_err(|e| fail(std::io::Error::other(e)))?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::drift::profile::{CaptionProfile, ImageProfile};

    fn profile(brightness: f64) -> RequestProfile {
        RequestProfile {
            image: ImageProfile {
                brightness_mean: brightness,
                brightness_std: 0.2,
                saturation_mean: 0.3,
                hue_counts: [1; crate::drift::profile::HUE_BINS],
                width: 128,
                height: 128,
                format: "png".to_owned(),
            },
            caption: CaptionProfile::of("a red circle", 4),
            embedding: None,
        }
    }

    #[test]
    fn the_window_keeps_the_last_requests_and_only_recent_ones() {
        let config = DriftConfig {
            window_requests: std::num::NonZeroUsize::new(50).unwrap(),
            window_minutes: std::num::NonZeroU32::new(10),
            ..DriftConfig::default()
        };
        let state = DriftState::new(&config).unwrap();
        let start = Instant::now();
        for i in 0..80 {
            state.record_at(profile(0.5), start + Duration::from_secs(i));
        }
        let status = state.status_at(start + Duration::from_secs(80));
        assert_eq!((status.live_size, status.window_requests, status.window_minutes), (50, 50, Some(10)));
        assert!(status.table().contains("50 of 50 requests of the last 10 min"), "{}", status.table());
        // Ten minutes after request 40 came, it and the 39 after it are left; later, none.
        assert_eq!(state.status_at(start + Duration::from_secs(40 + 600)).live_size, 40);
        assert_eq!(state.status_at(start + Duration::from_secs(80 + 601)).live_size, 0);
    }

    #[test]
    fn a_window_too_small_to_judge_has_no_verdict() {
        let state = DriftState::new(&DriftConfig::default()).unwrap();
        let start = Instant::now();
        for _ in 0..MIN_REFERENCE {
            state.record_at(profile(0.5), start);
        }
        state.freeze("then".to_owned()).unwrap();
        // A restart empties the window and keeps the reference: a few requests are no verdict.
        let restarted = DriftState::new(&DriftConfig::default()).unwrap();
        *restarted.reference.write().unwrap() = state.reference.read().unwrap().clone();
        for _ in 0..MIN_LIVE - 1 {
            restarted.record_at(profile(0.05), start);
        }
        let status = restarted.status_at(start);
        assert!(status.report.is_none() && status.reference.is_some());
        assert!(status.table().contains("no verdict yet"), "{}", status.table());
        restarted.record_at(profile(0.05), start);
        let report = restarted.status_at(start).report.expect("judged at MIN_LIVE requests");
        assert!(report.features.iter().any(|f| f.feature == "brightness_mean" && f.drifted), "{report:#?}");
    }

    #[test]
    fn a_comparison_is_kept_until_the_window_or_the_reference_changes() {
        let state = DriftState::new(&DriftConfig::default()).unwrap();
        let start = Instant::now();
        for i in 0..40 {
            state.record_at(profile(0.5 + f64::from(i) * 0.001), start);
        }
        state.freeze("then".to_owned()).unwrap();
        let first = state.status_at(start).report.unwrap();
        assert!(!first.detected);
        assert_eq!(lock(&state.last).as_ref().unwrap().0, (40, 40, 1));
        for _ in 0..40 {
            state.record_at(profile(0.05), start);
        }
        let second = state.status_at(start).report.unwrap();
        assert_eq!(second.live_size, 80);
        let brightness =
            |report: &DriftReport| report.features.iter().find(|f| f.feature == "brightness_mean").unwrap().drifted;
        assert!(!brightness(&first) && brightness(&second), "{second:#?}");
        assert_eq!(lock(&state.last).as_ref().unwrap().0, (80, 80, 1));
    }
}
