//! Percentile bootstrap intervals of a quantile (P50 and P95 of a variant's latency), with a
//! seeded splitmix64 stream so that results are reproducible (and match the Python reference
//! in `tools/make_ab_fixtures.py`). Quantiles interpolate linearly, as numpy's default.

use super::Interval;

/// splitmix64: a small, well-mixed generator (not for secrets).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller), for simulations.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The `q`-quantile of sorted `values` (non-empty), interpolated linearly.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = (sorted.len() - 1) as f64 * q;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (position - below as f64) * (sorted[above] - sorted[below])
}

/// The `q`-quantile of `values` (non-empty).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile_sorted(&sorted, q)
}

/// The `q`-quantile of `values` and its percentile bootstrap interval at `level` from
/// `resamples` resamples drawn with `seed`.
pub fn quantile_interval(values: &[f64], q: f64, resamples: usize, seed: u64, level: f64) -> (f64, Interval) {
    let n = values.len();
    let mut rng = SplitMix64::new(seed);
    let mut resample = vec![0.0; n];
    let mut estimates: Vec<f64> = (0..resamples)
        .map(|_| {
            for slot in &mut resample {
                *slot = values[(rng.next_u64() % n as u64) as usize];
            }
            resample.sort_by(f64::total_cmp);
            quantile_sorted(&resample, q)
        })
        .collect();
    estimates.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    let interval = Interval { lo: quantile_sorted(&estimates, tail), hi: quantile_sorted(&estimates, 1.0 - tail) };
    (quantile(values, q), interval)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::stats::fixtures::{close, floats, load};

    #[test]
    fn matches_the_numpy_reference_with_the_same_stream() {
        for case in load()["bootstrap"].as_array().unwrap() {
            let values = floats(&case["values"]);
            let q = case["q"].as_f64().unwrap();
            let resamples = case["resamples"].as_u64().unwrap() as usize;
            let (estimate, interval) = quantile_interval(&values, q, resamples, case["seed"].as_u64().unwrap(), 0.95);
            close(estimate, case["estimate"].as_f64().unwrap(), 1e-12, "estimate");
            close(interval.lo, case["lo"].as_f64().unwrap(), 1e-12, "lo");
            close(interval.hi, case["hi"].as_f64().unwrap(), 1e-12, "hi");
        }
    }
}
