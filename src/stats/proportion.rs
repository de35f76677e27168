//! Two proportions (error rates of two variants): the pooled two-sample z test (statsmodels'
//! `proportions_ztest`) and Newcombe's hybrid score interval of the difference
//! (`confint_proportions_2indep(method="newcomb")`), which stays sensible at 0 errors.

use super::{Interval, normal_cdf, normal_quantile};

/// `x2 / n2 - x1 / n1`, its z test and interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProportionDifference {
    pub difference: f64,
    pub z: f64,
    pub p: f64,
    pub interval: Interval,
}

/// Wilson's score interval of `x` successes in `n`.
fn wilson(x: u64, n: u64, z: f64) -> Interval {
    let (x, n) = (x as f64, n as f64);
    let share = x / n;
    let denominator = n + z * z;
    let centre = (x + z * z / 2.0) / denominator;
    let half = z * n.sqrt() / denominator * (share * (1.0 - share) + z * z / (4.0 * n)).sqrt();
    Interval { lo: centre - half, hi: centre + half }
}

/// Compares `x2` of `n2` (the second variant) with `x1` of `n1` (both `n` > 0). With no
/// success or no failure at all the z test has no spread: z is 0 and p is 1.
pub fn two_proportions(x1: u64, n1: u64, x2: u64, n2: u64, level: f64) -> ProportionDifference {
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
    let spread = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    let (z, p) = if spread > 0.0 {
        let z = (p2 - p1) / spread;
        (z, (2.0 * normal_cdf(-z.abs())).min(1.0))
    } else {
        (0.0, 1.0)
    };
    let critical = normal_quantile(1.0 - (1.0 - level) / 2.0);
    let (w1, w2) = (wilson(x1, n1, critical), wilson(x2, n2, critical));
    let difference = p2 - p1;
    let interval = Interval {
        lo: difference - ((p2 - w2.lo).powi(2) + (w1.hi - p1).powi(2)).sqrt(),
        hi: difference + ((w2.hi - p2).powi(2) + (p1 - w1.lo).powi(2)).sqrt(),
    };
    ProportionDifference { difference, z, p, interval }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::stats::fixtures::{close, load};

    #[test]
    fn matches_statsmodels() {
        for case in load()["two_proportions"].as_array().unwrap() {
            let count = |key: &str| case[key].as_u64().unwrap();
            let result = two_proportions(count("x1"), count("n1"), count("x2"), count("n2"), 0.95);
            let what = format!("{case}");
            close(result.z, case["z"].as_f64().unwrap(), 1e-9, &what);
            close(result.p, case["p"].as_f64().unwrap(), 1e-9, &what);
            close(result.interval.lo, case["lo"].as_f64().unwrap(), 1e-9, &what);
            close(result.interval.hi, case["hi"].as_f64().unwrap(), 1e-9, &what);
        }
    }

    #[test]
    fn no_errors_anywhere_is_no_difference() {
        let result = two_proportions(0, 30, 0, 40, 0.95);
        assert_eq!((result.difference, result.z, result.p), (0.0, 0.0, 1.0));
        assert!(result.interval.lo < 0.0 && result.interval.hi > 0.0);
    }
}
