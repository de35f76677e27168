//! How a shadow variant agrees with the routed one, as `/health` reports it and the dashboard
//! records it. Data only.

use serde::{Deserialize, Serialize};

/// What `/health` says about the shadow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    pub model: String,
    pub share: f64,
    /// Copies whose caption equals the answer's (case and spacing aside).
    pub agreed: u64,
    pub differed: u64,
    pub failed: u64,
    /// Copies not made because the shadow queue was full.
    pub dropped: u64,
    /// agreed / (agreed + differed), once there is one.
    pub agreement: Option<f64>,
}
