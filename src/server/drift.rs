//! Drift on the server: the profile of every real caption request (probes marked with
//! `X-Capwatch-Probe` are left out) goes into a bounded live window; a reference is frozen from
//! that window (`POST /drift/baseline`, loopback only) and saved to `service.drift.reference`,
//! which is loaded again at start; `GET /drift` and `/metrics` compare the two
//! ([`crate::drift::report`]). This module keeps the windows and the file; the tests are pure.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::DriftConfig;
use crate::drift::profile::RequestProfile;
use crate::drift::report::{DriftReport, compare};

/// Header the dashboard's probes carry, so that its fixed test images stay out of the window.
pub const PROBE_HEADER: &str = "x-capwatch-probe";
/// Fewest live requests a reference may be frozen from.
pub const MIN_REFERENCE: usize = 30;

/// A frozen reference, as the file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// When it was frozen (RFC 3339).
    pub created_at: String,
    pub profiles: Vec<RequestProfile>,
}

/// The live window and the reference.
pub struct DriftState {
    window: Mutex<VecDeque<RequestProfile>>,
    capacity: usize,
    reference: RwLock<Option<Reference>>,
    path: Option<PathBuf>,
}

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

/// What `GET /drift` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftStatus {
    pub live_size: usize,
    pub window_requests: usize,
    /// The reference's size and age, once there is one.
    pub reference: Option<ReferenceInfo>,
    /// The comparison, once there is a reference and a live request.
    pub report: Option<DriftReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceInfo {
    pub size: usize,
    pub created_at: String,
    /// Where it is saved, if anywhere.
    pub path: Option<String>,
}

impl DriftStatus {
    /// The status as people read it: the window, the reference, one row per feature, the verdict.
    pub fn table(&self) -> String {
        let mut text = format!("live window: {} of {} requests\n", self.live_size, self.window_requests);
        match &self.reference {
            None => text.push_str("reference: none yet (capwatch drift baseline freezes the live window)\n"),
            Some(reference) => text.push_str(&format!(
                "reference: {} requests, frozen {}{}\n",
                reference.size,
                reference.created_at,
                reference.path.as_ref().map_or_else(String::new, |p| format!(" ({p})"))
            )),
        }
        let Some(report) = &self.report else { return text };
        text.push_str(&format!("\n{:<18} {:<15} {:>12}  {}\n", "feature", "test", "score", "drifted"));
        for feature in &report.features {
            text.push_str(&format!(
                "{:<18} {:<15} {:>12.4e}  {}\n",
                feature.feature,
                feature.test.name(),
                feature.score,
                if feature.drifted { "DRIFT" } else { "-" }
            ));
        }
        let drifted = report.features.iter().filter(|f| f.drifted).count();
        text.push_str(&format!(
            "\n{}: {drifted} of {} features drifted ({:.0} %)\n",
            if report.detected { "DRIFT DETECTED" } else { "no drift" },
            report.features.len(),
            report.drifted_share * 100.0
        ));
        text
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; it is still usable.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DriftState {
    /// An empty window; the reference file is read if it exists (a bad file is an error).
    pub fn new(config: &DriftConfig) -> Result<Self, ReferenceError> {
        let reference = match &config.reference {
            Some(path) if path.exists() => Some(read_reference(path)?),
            _ => None,
        };
        Ok(Self {
            window: Mutex::new(VecDeque::with_capacity(config.window_requests.get())),
            capacity: config.window_requests.get(),
            reference: RwLock::new(reference),
            path: config.reference.clone(),
        })
    }

    /// Adds one request's profile, dropping the oldest when full.
    pub fn record(&self, profile: RequestProfile) {
        let mut window = lock(&self.window);
        if window.len() == self.capacity {
            window.pop_front();
        }
        window.push_back(profile);
    }

    fn live(&self) -> Vec<RequestProfile> {
        lock(&self.window).iter().cloned().collect()
    }

    /// Freezes the live window as the reference (and saves it, when a path is configured).
    pub fn freeze(&self, now: String) -> Result<ReferenceInfo, ReferenceError> {
        let profiles = self.live();
        if profiles.len() < MIN_REFERENCE {
            return Err(ReferenceError::TooFew { have: profiles.len() });
        }
        let reference = Reference { created_at: now, profiles };
        if let Some(path) = &self.path {
            write_reference(path, &reference)?;
        }
        let info = self.info(&reference);
        *self.reference.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reference);
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
        let live = self.live();
        let reference = self.reference.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        DriftStatus {
            live_size: live.len(),
            window_requests: self.capacity,
            reference: reference.as_ref().map(|r| self.info(r)),
            report: reference.as_ref().filter(|_| !live.is_empty()).map(|r| compare(&r.profiles, &live)),
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
