//! Evidently's default drift test for one numerical column, and the two it needs besides KS
//! and the distances: with at most 1,000 reference values, a z test of two proportions (two
//! distinct values), a chi-square test (3–5) or KS (more); above that, Jensen-Shannon (≤ 5
//! distinct values) or the normed Wasserstein distance. p-value tests drift below 0.05 (KS at
//! or below), distances at or above 0.1, as Evidently's thresholds.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::distance::{bin_numbers, jensen_shannon, normed_wasserstein};
use super::ks::ks_2samp;

/// Reference sizes up to this get a p-value test.
pub const SMALL_REFERENCE: usize = 1000;
/// p-value tests: drift below (KS: at or below) this.
pub const P_THRESHOLD: f64 = 0.05;
/// Distances: drift at or above this.
pub const DISTANCE_THRESHOLD: f64 = 0.1;

/// Which test judged a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    Z,
    ChiSquare,
    Ks,
    JensenShannon,
    Wasserstein,
    /// Share of live caption words the reference never used (not a column test).
    NewWords,
    /// Maximum mean discrepancy of the pooled embeddings, permutation p-value (not a column test).
    Mmd,
}

impl TestKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Z => "z",
            Self::ChiSquare => "chi_square",
            Self::Ks => "ks",
            Self::JensenShannon => "jensen_shannon",
            Self::Wasserstein => "wasserstein",
            Self::NewWords => "new_words",
            Self::Mmd => "mmd",
        }
    }

    /// Whether the score is a p-value (small is drift) rather than a distance (large is drift).
    pub fn is_p_value(self) -> bool {
        matches!(self, Self::Z | Self::ChiSquare | Self::Ks | Self::Mmd)
    }
}

/// A column's score and whether it drifted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub test: TestKind,
    pub score: f64,
    pub drifted: bool,
}

fn distinct_sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut keys: Vec<f64> = values.collect();
    keys.sort_by(f64::total_cmp);
    keys.dedup();
    keys
}

/// The test Evidently picks for a numerical column of `reference` against `live`.
pub fn default_test(reference: &[f64], live: &[f64]) -> TestKind {
    let distinct = distinct_sorted(reference.iter().chain(live).copied()).len();
    match (reference.len() <= SMALL_REFERENCE, distinct) {
        (true, 0..=2) => TestKind::Z,
        (true, 3..=5) => TestKind::ChiSquare,
        (true, _) => TestKind::Ks,
        (false, 0..=5) => TestKind::JensenShannon,
        (false, _) => TestKind::Wasserstein,
    }
}

/// Judges `live` against `reference` with Evidently's default test; None when either is empty.
pub fn column_drift(reference: &[f64], live: &[f64]) -> Option<ColumnDrift> {
    if reference.is_empty() || live.is_empty() {
        return None;
    }
    let test = default_test(reference, live);
    let score = match test {
        TestKind::Z => z_test(reference, live),
        TestKind::ChiSquare => chi_square(reference, live),
        TestKind::Ks => ks_2samp(reference, live)?.p,
        TestKind::JensenShannon => jensen_shannon(&bin_numbers(reference, live)),
        TestKind::Wasserstein => normed_wasserstein(reference, live)?,
        // Never a column's default.
        TestKind::NewWords | TestKind::Mmd => return None,
    };
    let drifted = match test {
        TestKind::Ks => score <= P_THRESHOLD,
        TestKind::Z | TestKind::ChiSquare | TestKind::Mmd => score < P_THRESHOLD,
        TestKind::JensenShannon | TestKind::Wasserstein | TestKind::NewWords => score >= DISTANCE_THRESHOLD,
    };
    Some(ColumnDrift { test, score, drifted })
}

/// Evidently's z test: the smallest value against the rest, pooled two-proportion z, two-sided.
fn z_test(reference: &[f64], live: &[f64]) -> f64 {
    let keys = distinct_sorted(reference.iter().chain(live).copied());
    if keys.len() < 2 {
        return 1.0;
    }
    let share = |values: &[f64]| values.iter().filter(|v| **v != keys[0]).count() as f64 / values.len() as f64;
    let (n1, n2) = (reference.len() as f64, live.len() as f64);
    let (p1, p2) = (share(reference), share(live));
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let spread = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if spread == 0.0 {
        return 1.0;
    }
    let z = (p1 - p2) / spread;
    2.0 * (1.0 - crate::stats::normal_cdf(z.abs()))
}

/// Evidently's chi-square test: live counts per value against the reference's counts scaled to
/// the live size (scipy's `chisquare`, k − 1 degrees of freedom).
fn chi_square(reference: &[f64], live: &[f64]) -> f64 {
    let keys = distinct_sorted(reference.iter().chain(live).copied());
    let scale = live.len() as f64 / reference.len() as f64;
    let count = |values: &[f64], key: f64| values.iter().filter(|v| **v == key).count() as f64;
    let statistic: f64 = keys
        .iter()
        .map(|&key| {
            let expected = count(reference, key) * scale;
            let observed = count(live, key);
            if expected > 0.0 {
                (observed - expected).powi(2) / expected
            } else if observed > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        })
        .sum();
    let df = keys.len().saturating_sub(1) as f64;
    if df == 0.0 || statistic.is_nan() {
        return 1.0;
    }
    if statistic.is_infinite() {
        return 0.0;
    }
    ChiSquared::new(df).map_or(1.0, |chi| chi.sf(statistic))
}
