//! Always-valid p-values for a difference that is watched as it accumulates: the normal
//! mixture sequential probability ratio test (mSPRT; Johari, Pekelis and Walsh, "Always valid
//! inference", 2017). Fed one paired difference at a time (variant b minus variant a on the
//! same test image), it keeps p_n = min over k ≤ n of 1 / Λ_k, so stopping as soon as p < α
//! keeps the false-positive rate at α however often it is looked at. The variance is
//! estimated from the differences so far; the mixing variance τ² equals it (effects of about
//! one standard deviation are the ones it is tuned to find soonest).

/// Pairs before the first p-value: with the variance estimated from the data, a tiny sample's
/// estimate can be far too small and Λ far too large (at 2 pairs, 28 % of simulated A/A runs
/// reached a false verdict); from this many on, the estimate is steady enough (see the A/A test).
pub const MIN_PAIRS: u64 = 20;

/// The least variance assumed for differences of a bounded measure (failure 0/1, quality
/// 0..1): a quarter (a fair coin's) spread over the burn-in. Without it, differences that are
/// all the same (a variant that fails every image the other answers, or writes captions one
/// keyword poorer on every image) have variance 0 and would never be decided.
pub const BOUNDED_VARIANCE_FLOOR: f64 = 0.25 / MIN_PAIRS as f64;

/// Running mSPRT on paired differences.
#[derive(Debug, Clone, Default)]
pub struct Msprt {
    count: u64,
    mean: f64,
    /// Sum of squared deviations (Welford).
    squares: f64,
    p: f64,
    /// The variance used is at least this.
    variance_floor: f64,
}

impl Msprt {
    /// For an unbounded measure (log latency): the variance is the sample's.
    pub fn new() -> Self {
        Self { p: 1.0, ..Self::default() }
    }

    /// For differences of a measure bounded in [0, 1]: the variance is at least
    /// [`BOUNDED_VARIANCE_FLOOR`].
    pub fn bounded() -> Self {
        Self { variance_floor: BOUNDED_VARIANCE_FLOOR, ..Self::new() }
    }

    /// Adds one difference; returns the always-valid p-value after it.
    pub fn push(&mut self, difference: f64) -> f64 {
        self.count += 1;
        let delta = difference - self.mean;
        self.mean += delta / self.count as f64;
        self.squares += delta * (difference - self.mean);
        if self.count >= MIN_PAIRS {
            let n = self.count as f64;
            let variance = (self.squares / (n - 1.0)).max(self.variance_floor);
            if variance > 0.0 {
                let tau2 = variance;
                let log_lambda = 0.5 * (variance / (variance + n * tau2)).ln()
                    + n * n * tau2 * self.mean * self.mean / (2.0 * variance * (variance + n * tau2));
                self.p = self.p.min((-log_lambda).exp()).min(1.0);
            }
        }
        self.p
    }

    pub fn p(&self) -> f64 {
        self.p
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean difference so far.
    pub fn mean(&self) -> f64 {
        self.mean
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::stats::bootstrap::SplitMix64;
    use crate::stats::fixtures::{close, floats, load};

    #[test]
    fn matches_the_reference_formula_step_by_step() {
        for case in load()["msprt"].as_array().unwrap() {
            let mut test = Msprt::new();
            for (step, (difference, expected)) in floats(&case["diffs"]).into_iter().zip(floats(&case["p"])).enumerate()
            {
                close(test.push(difference), expected, 1e-9, &format!("{} step {step}", case["name"]));
            }
        }
    }

    /// 1,000 simulated A/A comparisons of log latencies (same distribution on both sides),
    /// watched after every pair up to 300 pairs with a verdict at p < 0.05: false verdicts
    /// stay at or under the nominal 5 %. (Printed: run with --nocapture to see the rate.)
    #[test]
    fn a_a_runs_watched_continuously_keep_the_false_verdict_rate() {
        let mut rng = SplitMix64::new(20_261_127);
        let runs = 1000;
        let mut false_verdicts = 0;
        for _ in 0..runs {
            let mut test = Msprt::new();
            for _ in 0..300 {
                let a = 3.0 + 0.3 * rng.next_normal();
                let b = 3.0 + 0.3 * rng.next_normal();
                if test.push(b - a) < 0.05 {
                    false_verdicts += 1;
                    break;
                }
            }
        }
        let rate = false_verdicts as f64 / runs as f64;
        println!("A/A false verdict rate: {rate:.3} ({false_verdicts} of {runs})");
        assert!(rate <= 0.05, "false verdicts in {false_verdicts} of {runs} A/A runs");
    }

    #[test]
    fn a_real_difference_is_decided() {
        let mut rng = SplitMix64::new(7);
        let mut test = Msprt::new();
        let decided = (1..=300).find(|_| test.push(0.15 + 0.3 * rng.next_normal()) < 0.05);
        assert!(decided.is_some_and(|n| n < 100), "{decided:?}");
        assert!((test.mean() - 0.15).abs() < 0.1);
    }

    /// Bounded measures: a difference that is the same on every pair is decided at the end of
    /// the burn-in, and A/A runs of failures and discrete quality keep the nominal rate.
    #[test]
    fn bounded_differences_are_decided_when_constant_and_quiet_when_equal() {
        let mut always_fails = Msprt::bounded();
        let decided = (1..=100).find(|_| always_fails.push(1.0) < 0.05);
        assert_eq!(decided, Some(MIN_PAIRS));
        let mut plain = Msprt::new();
        assert!((1..=100).all(|_| plain.push(1.0) >= 1.0), "without the floor it never decides");

        let mut rng = SplitMix64::new(99);
        let runs = 1000;
        let mut false_verdicts = 0;
        for run in 0..runs {
            let mut test = Msprt::bounded();
            for _ in 0..300 {
                // Half the runs: failures at 10 %; the others: quality in thirds (0, 1/3, 2/3, 1).
                let draw = |rng: &mut SplitMix64| {
                    let u = rng.next_f64();
                    if run % 2 == 0 { f64::from(u8::from(u < 0.1)) } else { (u * 4.0).floor().min(3.0) / 3.0 }
                };
                let (a, b) = (draw(&mut rng), draw(&mut rng));
                if test.push(b - a) < 0.05 {
                    false_verdicts += 1;
                    break;
                }
            }
        }
        let rate = false_verdicts as f64 / runs as f64;
        println!("bounded A/A false verdict rate: {rate:.3} ({false_verdicts} of {runs})");
        assert!(rate <= 0.05, "false verdicts in {false_verdicts} of {runs} A/A runs");
    }
}
