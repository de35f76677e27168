//! The difference of two means with unequal variances (Welch): mean quality of two variants,
//! as scipy's `ttest_ind(b, a, equal_var=False)` and its `confidence_interval`.

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::Interval;

/// `mean(b) - mean(a)`, Welch's t test and interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeanDifference {
    pub difference: f64,
    pub t: f64,
    pub df: f64,
    pub p: f64,
    pub interval: Interval,
}

fn mean_and_variance(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, variance)
}

/// Welch's test of `b` against `a` (each with two values at least); None when neither varies.
pub fn welch(a: &[f64], b: &[f64], level: f64) -> Option<MeanDifference> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (mean_a, var_a) = mean_and_variance(a);
    let (mean_b, var_b) = mean_and_variance(b);
    let (sa, sb) = (var_a / a.len() as f64, var_b / b.len() as f64);
    let spread = (sa + sb).sqrt();
    if spread == 0.0 {
        return None;
    }
    let df = (sa + sb).powi(2) / (sa * sa / (a.len() as f64 - 1.0) + sb * sb / (b.len() as f64 - 1.0));
    let difference = mean_b - mean_a;
    let t = difference / spread;
    let student = StudentsT::new(0.0, 1.0, df).ok()?;
    let p = (2.0 * student.cdf(-t.abs())).min(1.0);
    let critical = student.inverse_cdf(1.0 - (1.0 - level) / 2.0);
    let interval = Interval { lo: difference - critical * spread, hi: difference + critical * spread };
    Some(MeanDifference { difference, t, df, p, interval })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::stats::fixtures::{close, floats, load};

    #[test]
    fn matches_scipy_ttest_ind_welch() {
        for case in load()["welch"].as_array().unwrap() {
            let result = welch(&floats(&case["a"]), &floats(&case["b"]), 0.95).unwrap();
            for (actual, key) in [
                (result.difference, "diff"),
                (result.t, "t"),
                (result.df, "df"),
                (result.p, "p"),
                (result.interval.lo, "lo"),
                (result.interval.hi, "hi"),
            ] {
                close(actual, case[key].as_f64().unwrap(), 1e-8, key);
            }
        }
    }

    #[test]
    fn constant_samples_have_no_test() {
        assert_eq!(welch(&[1.0, 1.0], &[1.0, 1.0, 1.0], 0.95), None);
        assert_eq!(welch(&[1.0], &[0.5, 0.7], 0.95), None);
    }
}
