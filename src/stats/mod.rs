//! Statistics for comparing two model variants (the A/B verdicts): rank tests on
//! latencies ([`rank`]), proportions of errors ([`proportion`]), differences of mean quality
//! ([`mean`]), bootstrap intervals of percentiles ([`bootstrap`]) and always-valid sequential
//! p-values that may be watched continuously ([`sequential`]), and the two-variant
//! [`comparison`] built on them (figures and a verdict). Pure functions on slices;
//! each is checked against scipy / statsmodels in `tests/fixtures/ab_stats.json`
//! (`tools/make_ab_fixtures.py`). Normal and Student t distributions come from `statrs`.

pub mod bootstrap;
pub mod comparison;
pub mod mean;
pub mod proportion;
pub mod rank;
pub mod sequential;

use statrs::distribution::{ContinuousCDF, Normal};

/// A two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// The standard normal distribution.
fn standard_normal() -> Normal {
    // Mean 0 and standard deviation 1 are valid parameters.
    Normal::standard()
}

/// Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    standard_normal().cdf(x)
}

/// The z with Φ(z) = p.
pub fn normal_quantile(p: f64) -> f64 {
    standard_normal().inverse_cdf(p)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! The reference values of `tests/fixtures/ab_stats.json`.
    #![allow(clippy::unwrap_used)]

    pub fn load() -> serde_json::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ab_stats.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    pub fn floats(value: &serde_json::Value) -> Vec<f64> {
        value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    }

    /// `actual` within `relative` of `expected` (absolutely, near zero).
    pub fn close(actual: f64, expected: f64, relative: f64, what: &str) {
        let tolerance = relative * expected.abs().max(1e-12);
        assert!((actual - expected).abs() <= tolerance, "{what}: {actual} vs {expected} (±{tolerance})");
    }
}
