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
    /// Chi-square test of homogeneity (two samples, rare values pooled): the server's test for
    /// 3–5 distinct values instead of Evidently's goodness of fit ([`column_drift_two_sample`]).
    ChiSquareHomogeneity,
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
            Self::ChiSquareHomogeneity => "chi_square_homogeneity",
            Self::Ks => "ks",
            Self::JensenShannon => "jensen_shannon",
            Self::Wasserstein => "wasserstein",
            Self::NewWords => "new_words",
            Self::Mmd => "mmd",
        }
    }

    /// Whether the score is a p-value (small is drift) rather than a distance (large is drift).
    pub fn is_p_value(self) -> bool {
        matches!(self, Self::Z | Self::ChiSquare | Self::ChiSquareHomogeneity | Self::Ks | Self::Mmd)
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
        TestKind::ChiSquareHomogeneity | TestKind::NewWords | TestKind::Mmd => return None,
    };
    let drifted = match test {
        TestKind::Ks => score <= P_THRESHOLD,
        TestKind::Z | TestKind::ChiSquare | TestKind::ChiSquareHomogeneity | TestKind::Mmd => score < P_THRESHOLD,
        TestKind::JensenShannon | TestKind::Wasserstein | TestKind::NewWords => score >= DISTANCE_THRESHOLD,
    };
    Some(ColumnDrift { test, score, drifted })
}

/// The server's test for a column: Evidently's default, except that where Evidently picks its
/// chi-square goodness of fit (3–5 distinct values) the chi-square test of homogeneity is used.
/// Evidently's version takes the reference's shares as exact, ignoring the reference's own
/// sampling noise, and calls any value the reference never had drift (p = 0): on stable windows
/// of the bundled model it flagged caption length 24 % and repeated pairs 41 % of the time, not
/// 5 % (`make bench-drift-calibration`).
pub fn column_drift_two_sample(reference: &[f64], live: &[f64]) -> Option<ColumnDrift> {
    let drift = column_drift(reference, live)?;
    if drift.test != TestKind::ChiSquare {
        return Some(drift);
    }
    let score = chi_square_homogeneity(reference, live);
    Some(ColumnDrift { test: TestKind::ChiSquareHomogeneity, score, drifted: score < P_THRESHOLD })
}

/// Fewest expected counts per cell, in each sample, before a value is pooled with its neighbour.
const MIN_EXPECTED: f64 = 5.0;

/// The 2 × k chi-square test of homogeneity (scipy's `chi2_contingency`, no continuity
/// correction), adjacent values pooled until every cell expects at least [`MIN_EXPECTED`].
fn chi_square_homogeneity(reference: &[f64], live: &[f64]) -> f64 {
    let keys = distinct_sorted(reference.iter().chain(live).copied());
    let count = |values: &[f64], key: f64| values.iter().filter(|v| **v == key).count() as f64;
    let (r_total, l_total) = (reference.len() as f64, live.len() as f64);
    let total = r_total + l_total;
    let enough = |(r, l): (f64, f64)| (r + l) * r_total.min(l_total) / total >= MIN_EXPECTED;
    let mut cells: Vec<(f64, f64)> = Vec::new();
    let mut pending = (0.0, 0.0);
    for key in keys {
        pending = (pending.0 + count(reference, key), pending.1 + count(live, key));
        if enough(pending) {
            cells.push(pending);
            pending = (0.0, 0.0);
        }
    }
    match cells.last_mut() {
        Some(last) => *last = (last.0 + pending.0, last.1 + pending.1),
        None => return 1.0,
    }
    if cells.len() < 2 {
        return 1.0;
    }
    let statistic: f64 = cells
        .iter()
        .map(|&(r, l)| {
            let (expected_r, expected_l) = ((r + l) * r_total / total, (r + l) * l_total / total);
            (r - expected_r).powi(2) / expected_r + (l - expected_l).powi(2) / expected_l
        })
        .sum();
    ChiSquared::new((cells.len() - 1) as f64).map_or(1.0, |chi| chi.sf(statistic))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn column(counts: &[usize]) -> Vec<f64> {
        counts.iter().enumerate().flat_map(|(value, &n)| std::iter::repeat_n(value as f64, n)).collect()
    }

    /// Values from scipy 1.17.1: `chi2_contingency([[400, 80, 20], [380, 100, 20]],
    /// correction=False)` and the same with the rare value 3 pooled into 2 (`[[400, 80, 23],
    /// [380, 100, 21]]`).
    #[test]
    fn the_homogeneity_test_matches_scipy_and_pools_rare_values() {
        let p = chi_square_homogeneity(&column(&[400, 80, 20]), &column(&[380, 100, 20]));
        assert!((p - 0.2547375785292759).abs() < 1e-12, "{p}");
        let p = chi_square_homogeneity(&column(&[400, 80, 20, 3]), &column(&[380, 100, 20, 1]));
        assert!((p - 0.24390182769128543).abs() < 1e-12, "{p}");
        // A value the reference never had is no proof of drift by itself (Evidently: p = 0).
        let (reference, live) = (column(&[450, 50]), column(&[445, 54, 0, 1]));
        let drift = column_drift_two_sample(&column(&[440, 50, 10]), &column(&[430, 59, 10, 1])).unwrap();
        assert_eq!(drift.test, TestKind::ChiSquareHomogeneity);
        assert!(!drift.drifted, "{drift:?}");
        assert_eq!(column_drift(&column(&[440, 50, 10]), &column(&[430, 59, 10, 1])).unwrap().score, 0.0);
        // Two values: Evidently's z test, unchanged.
        assert_eq!(column_drift_two_sample(&reference, &live).unwrap().test, TestKind::ChiSquareHomogeneity);
        assert_eq!(column_drift_two_sample(&column(&[450, 50]), &column(&[445, 55])).unwrap().test, TestKind::Z);
        // A real shift is still found.
        assert!(column_drift_two_sample(&column(&[400, 80, 20]), &column(&[250, 200, 50])).unwrap().drifted);
    }
}
