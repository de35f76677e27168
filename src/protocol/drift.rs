//! Drift as `GET /drift` and `POST /drift/baseline` speak it: the live window against the
//! reference ([`DriftStatus`], with its table for people), a frozen reference ([`ReferenceInfo`]),
//! and the header that keeps the dashboard's probes out of the window. Data only.

use serde::{Deserialize, Serialize};

use crate::drift::report::DriftReport;

/// Header the dashboard's probes carry, so that its fixed test images stay out of the window.
pub const PROBE_HEADER: &str = "x-capwatch-probe";
/// What `GET /drift` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftStatus {
    pub live_size: usize,
    pub window_requests: usize,
    /// Requests older than this many minutes are left out, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_minutes: Option<u32>,
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

/// `Froze a drift reference of 500 requests at …, saved to …`.
impl std::fmt::Display for ReferenceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Froze a drift reference of {} requests at {}", self.size, self.created_at)?;
        match &self.path {
            None => f.write_str(" (not saved: service.drift.reference is not set)"),
            Some(path) => write!(f, ", saved to {path}"),
        }
    }
}

impl DriftStatus {
    /// The status as people read it: the window, the reference, one row per feature, the verdict.
    pub fn table(&self) -> String {
        let minutes = self.window_minutes.map_or_else(String::new, |m| format!(" of the last {m} min"));
        let mut text = format!("live window: {} of {} requests{minutes}\n", self.live_size, self.window_requests);
        match &self.reference {
            None => text.push_str("reference: none yet (capwatch drift baseline freezes the live window)\n"),
            Some(reference) => text.push_str(&format!(
                "reference: {} requests, frozen {}{}\n",
                reference.size,
                reference.created_at,
                reference.path.as_ref().map_or_else(String::new, |p| format!(" ({p})"))
            )),
        }
        let Some(report) = &self.report else {
            if self.reference.is_some() {
                text.push_str("no verdict yet: too few requests in the live window to judge\n");
            }
            return text;
        };
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
