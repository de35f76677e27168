//! The Mann-Whitney U test and the Hodges-Lehmann shift with its distribution-free interval:
//! is one variant's latency distribution shifted against the other's, and by how much?
//! As scipy's `mannwhitneyu(method="auto")`: the exact null distribution when a sample has at
//! most 8 values and there are no ties, else the normal approximation with the tie and
//! continuity corrections.

use super::{Interval, normal_cdf, normal_quantile};

/// The result of a two-sided Mann-Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RankTest {
    /// U of the first sample (pairs where it is the larger, ties counting a half).
    pub u: f64,
    pub p: f64,
}

/// Average ranks (1-based) of `values`, and the sizes of the tie groups.
fn ranks(values: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut ties = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let average = (start + end + 1) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = average;
        }
        ties.push(end - start);
        start = end;
    }
    (ranks, ties)
}

/// Two-sided Mann-Whitney U test of `a` against `b` (both non-empty).
pub fn mann_whitney(a: &[f64], b: &[f64]) -> RankTest {
    let (n1, n2) = (a.len(), b.len());
    let all: Vec<f64> = a.iter().chain(b).copied().collect();
    let (ranks, ties) = ranks(&all);
    let r1: f64 = ranks[..n1].iter().sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let u2 = (n1 * n2) as f64 - u1;
    let u = u1.max(u2);
    let tied = ties.iter().any(|&t| t > 1);
    let p = if (n1 <= 8 || n2 <= 8) && !tied {
        2.0 * exact_sf(n1, n2, u.round() as usize)
    } else {
        let n = (n1 + n2) as f64;
        let tie_term: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum();
        let spread = ((n1 * n2) as f64 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
        let z = (u - (n1 * n2) as f64 / 2.0 - 0.5) / spread;
        // All values equal: no spread, z is -inf and the p-value 1.
        2.0 * normal_cdf(-z)
    };
    RankTest { u: u1, p: p.clamp(0.0, 1.0) }
}

/// P(U ≥ k) under the null for samples of `n1` and `n2`: the coefficients of the Gaussian
/// binomial [n1 + n2 choose n1]_q count the arrangements with each U.
fn exact_sf(n1: usize, n2: usize, k: usize) -> f64 {
    let (small, large) = (n1.min(n2), n1.max(n2));
    let degree = small * large;
    // ∏_{i=1..small} (1 - q^(large+i)) / (1 - q^i), as a polynomial in q.
    let mut counts = vec![0.0f64; degree + 1];
    counts[0] = 1.0;
    for i in 1..=small {
        // Multiply by (1 - q^(large+i)).
        let shift = large + i;
        for u in (shift..=degree).rev() {
            counts[u] -= counts[u - shift];
        }
        // Divide by (1 - q^i): a running sum with step i.
        for u in i..=degree {
            counts[u] += counts[u - i];
        }
    }
    let total: f64 = counts.iter().sum();
    counts.iter().skip(k).sum::<f64>() / total
}

/// The Hodges-Lehmann shift of `b` against `a` (the median of every `b_j - a_i`) and its
/// distribution-free interval at `level` (Moses; from the normal approximation of U).
pub fn hodges_lehmann(a: &[f64], b: &[f64], level: f64) -> (f64, Interval) {
    let mut differences: Vec<f64> = b.iter().flat_map(|&y| a.iter().map(move |&x| y - x)).collect();
    differences.sort_by(f64::total_cmp);
    let count = differences.len();
    let median = if count % 2 == 1 {
        differences[count / 2]
    } else {
        (differences[count / 2 - 1] + differences[count / 2]) / 2.0
    };
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let z = normal_quantile(1.0 - (1.0 - level) / 2.0);
    let k = (n1 * n2 / 2.0 - z * (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt()).floor().max(0.0) as usize;
    let k = k.min((count - 1) / 2);
    (median, Interval { lo: differences[k], hi: differences[count - 1 - k] })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::stats::fixtures::{close, floats, load};

    #[test]
    fn matches_scipy_mannwhitneyu_and_the_reference_hodges_lehmann() {
        for case in load()["mann_whitney"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let (a, b) = (floats(&case["a"]), floats(&case["b"]));
            let test = mann_whitney(&a, &b);
            close(test.u, case["u"].as_f64().unwrap(), 1e-12, &format!("{name}: U"));
            close(test.p, case["p"].as_f64().unwrap(), 1e-9, &format!("{name}: p"));
            let (shift, interval) = hodges_lehmann(&a, &b, 0.95);
            close(shift, case["hl_shift"].as_f64().unwrap(), 1e-12, &format!("{name}: shift"));
            close(interval.lo, case["hl_lo"].as_f64().unwrap(), 1e-12, &format!("{name}: lo"));
            close(interval.hi, case["hl_hi"].as_f64().unwrap(), 1e-12, &format!("{name}: hi"));
        }
    }

    #[test]
    fn the_exact_distribution_sums_to_one_and_is_symmetric() {
        assert!((exact_sf(3, 4, 0) - 1.0).abs() < 1e-15);
        // U is symmetric around n1 n2 / 2 = 6: P(U ≥ 7) = P(U ≤ 5).
        let upper = exact_sf(3, 4, 7);
        let lower = 1.0 - exact_sf(3, 4, 6);
        assert!((upper - lower).abs() < 1e-15);
        // 35 arrangements of 3 among 7; U = 12 needs all three on top: 1/35.
        assert!((exact_sf(3, 4, 12) - 1.0 / 35.0).abs() < 1e-15);
    }
}
