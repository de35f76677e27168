//! Two model variants compared on the same test images (the A/B pane): each pair is
//! variant a's and variant b's answer to one image in one cycle. Per variant: n, P50 and P95
//! with bootstrap intervals, error rate, mean quality. Between them: the latency shift
//! (Mann-Whitney U, Hodges-Lehmann on log latency as a ratio), the error-rate difference, the
//! quality difference, caption agreement, and a verdict from always-valid p-values (mSPRT on
//! the paired differences) that may be read after every pair. Pure: no clock, no I/O.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Interval;
use super::bootstrap::quantile_interval;
use super::mean::{MeanDifference, welch};
use super::proportion::{ProportionDifference, two_proportions};
use super::rank::{hodges_lehmann, mann_whitney};
use super::sequential::Msprt;

/// Significance of the verdicts (always-valid) and level of the intervals.
pub const ALPHA: f64 = 0.05;
/// Answers kept per variant for the fixed-sample statistics (the sequential tests see all).
pub const KEPT: usize = 2000;
/// Bootstrap resamples (seeded: the same data give the same intervals).
const RESAMPLES: usize = 400;

/// One variant's answer to one test image.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub latency_ms: f64,
    /// The caption, or None when the request failed.
    pub caption: Option<String>,
    /// Keyword quality (0..1) of a successful answer.
    pub quality: Option<f64>,
}

/// A quantile and its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub interval: Interval,
}

/// One variant's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantFigures {
    pub name: String,
    pub answers: usize,
    /// Latency of successful answers, ms (None before any).
    pub p50_ms: Option<Estimate>,
    pub p95_ms: Option<Estimate>,
    pub error_rate: f64,
    pub quality_mean: Option<f64>,
}

/// What the comparison says so far: more errors, else poorer quality, else speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing decided yet after this many pairs.
    Undecided { pairs: u64 },
    /// `worse` fails more often, by this many percentage points.
    MoreErrors { worse: String, points: f64, interval: Interval, pairs: u64 },
    /// `worse` writes poorer captions, by this much mean quality.
    LowerQuality { worse: String, difference: f64, interval: Interval, pairs: u64 },
    /// `faster` is this many percent faster (its latency is `1 - ratio` lower).
    Faster { faster: String, percent: f64, interval: Interval, pairs: u64 },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Undecided { pairs } => write!(f, "no difference yet (n={pairs})"),
            Self::MoreErrors { worse, points, interval, pairs } => write!(
                f,
                "{worse} fails more often: +{points:.1} points ({:.1}–{:.1}), decided after {pairs} probes",
                interval.lo, interval.hi
            ),
            Self::LowerQuality { worse, difference, interval, pairs } => write!(
                f,
                "{worse} writes poorer captions: quality −{difference:.2} ({:.2}–{:.2}), decided after {pairs} probes",
                interval.lo, interval.hi
            ),
            Self::Faster { faster, percent, interval, pairs } => write!(
                f,
                "{faster} is {percent:.0} % faster ({:.0}–{:.0} %), decided after {pairs} probes",
                interval.lo, interval.hi
            ),
        }
    }
}

/// Everything the A/B pane shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub a: VariantFigures,
    pub b: VariantFigures,
    pub pairs: u64,
    /// Mann-Whitney p of the latencies (fixed-sample; for display, not for the verdict).
    pub latency_p: Option<f64>,
    /// b's latency / a's (Hodges-Lehmann on log latency), with its interval.
    pub latency_ratio: Option<Estimate>,
    /// b's error rate − a's.
    pub errors: Option<ProportionDifference>,
    /// b's mean quality − a's.
    pub quality: Option<MeanDifference>,
    /// Share of pairs where both answered the same caption.
    pub agreement: Option<f64>,
    pub verdict: Verdict,
}

/// The running comparison of variants `a` and `b`.
#[derive(Debug, Clone)]
pub struct Comparison {
    names: [String; 2],
    answers: [VecDeque<Answer>; 2],
    /// Paired differences b − a: log latency (both succeeded), failure (0/1), quality (both succeeded).
    latency: Msprt,
    errors: Msprt,
    quality: Msprt,
    pairs: u64,
    agreeing: u64,
    answered_pairs: u64,
    /// Each test's verdict from when it first crossed ALPHA: errors, quality, latency.
    decided: [Option<Verdict>; 3],
}

impl Comparison {
    pub fn new(a: &str, b: &str) -> Self {
        Self {
            names: [a.to_owned(), b.to_owned()],
            answers: [VecDeque::new(), VecDeque::new()],
            latency: Msprt::new(),
            errors: Msprt::bounded(),
            quality: Msprt::bounded(),
            pairs: 0,
            agreeing: 0,
            answered_pairs: 0,
            decided: [None, None, None],
        }
    }

    /// Adds both variants' answers to the same image.
    pub fn push(&mut self, a: Answer, b: Answer) {
        self.pairs += 1;
        let failed = |answer: &Answer| if answer.caption.is_some() { 0.0 } else { 1.0 };
        self.errors.push(failed(&b) - failed(&a));
        if let (Some(caption_a), Some(caption_b)) = (&a.caption, &b.caption) {
            self.answered_pairs += 1;
            self.agreeing += u64::from(caption_a == caption_b);
            self.latency.push(b.latency_ms.max(1e-3).ln() - a.latency_ms.max(1e-3).ln());
        }
        if let (Some(quality_a), Some(quality_b)) = (a.quality, b.quality) {
            self.quality.push(quality_b - quality_a);
        }
        for (kept, answer) in self.answers.iter_mut().zip([a, b]) {
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back(answer);
        }
        for test in 0..3 {
            if self.decided[test].is_none() {
                self.decided[test] = self.decide(test);
            }
        }
    }

    /// Test `test` (0 errors, 1 quality, 2 latency) as a verdict, once its always-valid p-value
    /// is under ALPHA (it then stays decided, with the effect it had then).
    fn decide(&self, test: usize) -> Option<Verdict> {
        let pairs = self.pairs;
        let [a, b] = &self.names;
        if test == 0 && self.errors.p() < ALPHA {
            let errors = self.error_difference()?;
            let (worse, sign) = if errors.difference > 0.0 { (b, 1.0) } else { (a, -1.0) };
            let (lo, hi) = (errors.interval.lo * sign * 100.0, errors.interval.hi * sign * 100.0);
            return Some(Verdict::MoreErrors {
                worse: worse.clone(),
                points: errors.difference.abs() * 100.0,
                interval: Interval { lo: lo.min(hi), hi: lo.max(hi) },
                pairs,
            });
        }
        if test == 1 && self.quality.p() < ALPHA && self.quality.mean() != 0.0 {
            // Neither side varies (Welch has nothing to say): the difference is exact.
            let (difference, interval) = self.quality_difference().map_or_else(
                || {
                    let mean = |variant: usize| {
                        let q: Vec<f64> = self.answers[variant].iter().filter_map(|a| a.quality).collect();
                        q.iter().sum::<f64>() / q.len().max(1) as f64
                    };
                    let difference = mean(1) - mean(0);
                    (difference, Interval { lo: difference, hi: difference })
                },
                |q| (q.difference, q.interval),
            );
            let (worse, sign) = if difference < 0.0 { (b, -1.0) } else { (a, 1.0) };
            let (lo, hi) = (interval.lo * sign, interval.hi * sign);
            return Some(Verdict::LowerQuality {
                worse: worse.clone(),
                difference: difference.abs(),
                interval: Interval { lo: lo.min(hi), hi: lo.max(hi) },
                pairs,
            });
        }
        if test == 2 && self.latency.p() < ALPHA {
            let ratio = self.latency_ratio()?;
            // b / a below 1: b is faster by 1 − ratio; above 1: a is faster by 1 − 1 / ratio.
            let (faster, percent, lo, hi) = if ratio.value < 1.0 {
                (b, 1.0 - ratio.value, 1.0 - ratio.interval.hi, 1.0 - ratio.interval.lo)
            } else {
                (a, 1.0 - 1.0 / ratio.value, 1.0 - 1.0 / ratio.interval.lo, 1.0 - 1.0 / ratio.interval.hi)
            };
            return Some(Verdict::Faster {
                faster: faster.clone(),
                percent: percent * 100.0,
                interval: Interval { lo: lo * 100.0, hi: hi * 100.0 },
                pairs,
            });
        }
        None
    }

    fn successes(&self, variant: usize) -> Vec<f64> {
        self.answers[variant].iter().filter(|answer| answer.caption.is_some()).map(|answer| answer.latency_ms).collect()
    }

    fn latency_ratio(&self) -> Option<Estimate> {
        let (a, b) = (self.successes(0), self.successes(1));
        if a.is_empty() || b.is_empty() {
            return None;
        }
        let log = |values: &[f64]| values.iter().map(|v| v.max(1e-3).ln()).collect::<Vec<f64>>();
        let (shift, interval) = hodges_lehmann(&log(&a), &log(&b), 1.0 - ALPHA);
        Some(Estimate { value: shift.exp(), interval: Interval { lo: interval.lo.exp(), hi: interval.hi.exp() } })
    }

    fn error_difference(&self) -> Option<ProportionDifference> {
        let count = |variant: usize| {
            let kept = &self.answers[variant];
            (kept.iter().filter(|answer| answer.caption.is_none()).count() as u64, kept.len() as u64)
        };
        let ((x1, n1), (x2, n2)) = (count(0), count(1));
        (n1 > 0 && n2 > 0).then(|| two_proportions(x1, n1, x2, n2, 1.0 - ALPHA))
    }

    fn quality_difference(&self) -> Option<MeanDifference> {
        let qualities = |variant: usize| self.answers[variant].iter().filter_map(|a| a.quality).collect::<Vec<f64>>();
        welch(&qualities(0), &qualities(1), 1.0 - ALPHA)
    }

    fn variant(&self, variant: usize) -> VariantFigures {
        let kept = &self.answers[variant];
        let latencies = self.successes(variant);
        let estimate = |q: f64, seed: u64| {
            (!latencies.is_empty()).then(|| {
                let (value, interval) = quantile_interval(&latencies, q, RESAMPLES, seed, 1.0 - ALPHA);
                Estimate { value, interval }
            })
        };
        let qualities: Vec<f64> = kept.iter().filter_map(|answer| answer.quality).collect();
        VariantFigures {
            name: self.names[variant].clone(),
            answers: kept.len(),
            p50_ms: estimate(0.5, 50),
            p95_ms: estimate(0.95, 95),
            error_rate: if kept.is_empty() {
                0.0
            } else {
                kept.iter().filter(|answer| answer.caption.is_none()).count() as f64 / kept.len() as f64
            },
            quality_mean: (!qualities.is_empty()).then(|| qualities.iter().sum::<f64>() / qualities.len() as f64),
        }
    }

    /// The figures now.
    pub fn figures(&self) -> Figures {
        let (a, b) = (self.successes(0), self.successes(1));
        Figures {
            a: self.variant(0),
            b: self.variant(1),
            pairs: self.pairs,
            latency_p: (!a.is_empty() && !b.is_empty()).then(|| mann_whitney(&a, &b).p),
            latency_ratio: self.latency_ratio(),
            errors: self.error_difference(),
            quality: self.quality_difference(),
            agreement: (self.answered_pairs > 0).then(|| self.agreeing as f64 / self.answered_pairs as f64),
            // More errors or poorer captions outweigh speed.
            verdict: self.decided.iter().flatten().next().cloned().unwrap_or(Verdict::Undecided { pairs: self.pairs }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::stats::bootstrap::SplitMix64;

    fn answer(latency_ms: f64, caption: Option<&str>, quality: f64) -> Answer {
        Answer { latency_ms, caption: caption.map(str::to_owned), quality: caption.map(|_| quality) }
    }

    #[test]
    fn a_faster_variant_is_found_with_its_speed_up() {
        let mut rng = SplitMix64::new(1);
        let mut comparison = Comparison::new("a", "b");
        for pair in 1..=300 {
            let mut noise = || (0.2 * rng.next_normal()).exp();
            let (a, b) = (100.0 * noise(), 70.0 * noise());
            comparison.push(answer(a, Some("x"), 1.0), answer(b, Some("x"), 1.0));
            if pair < crate::stats::sequential::MIN_PAIRS {
                assert!(matches!(comparison.figures().verdict, Verdict::Undecided { .. }), "not before 20 pairs");
            }
        }
        let figures = comparison.figures();
        let Verdict::Faster { faster, percent, interval, pairs } = &figures.verdict else {
            panic!("{:?}", figures.verdict)
        };
        assert_eq!(faster, "b");
        assert!(interval.lo < 30.0 && 30.0 < interval.hi, "{interval:?}");
        assert!((20.0..40.0).contains(percent), "{percent}");
        assert!(*pairs <= 60, "decided after {pairs}");
        let text = figures.verdict.to_string();
        assert!(text.starts_with("b is ") && text.contains("% faster (") && text.contains("decided after"), "{text}");
        assert_eq!(figures.agreement, Some(1.0));
        let ratio = figures.latency_ratio.unwrap();
        assert!(ratio.interval.lo < 0.7 && 0.7 < ratio.interval.hi, "{ratio:?}");
        let p95 = figures.a.p95_ms.unwrap();
        assert!(p95.interval.lo <= p95.value && p95.value <= p95.interval.hi);
    }

    #[test]
    fn errors_and_quality_come_before_speed() {
        let mut comparison = Comparison::new("stable", "canary");
        let mut rng = SplitMix64::new(2);
        for round in 0..200 {
            let canary_fails = round % 4 == 0;
            let b = if canary_fails { answer(5.0, None, 0.0) } else { answer(50.0, Some("a red circle"), 1.0) };
            comparison.push(answer(100.0 + rng.next_normal(), Some("a red circle"), 1.0), b);
        }
        let figures = comparison.figures();
        assert!(
            matches!(&figures.verdict, Verdict::MoreErrors { worse, .. } if worse == "canary"),
            "{:?}",
            figures.verdict
        );
        assert!((figures.b.error_rate - 0.25).abs() < 1e-9);
        let text = figures.verdict.to_string();
        assert!(text.starts_with("canary fails more often: +") && text.contains("decided after"), "{text}");
        let Verdict::MoreErrors { points, interval, .. } = figures.verdict else { unreachable!() };
        assert!(interval.lo <= points && points <= interval.hi && interval.lo > 0.0, "{points} {interval:?}");

        let mut comparison = Comparison::new("a", "b");
        for round in 0..200 {
            let b_quality = if round % 2 == 0 { 0.5 } else { 1.0 };
            comparison.push(answer(10.0, Some("x y"), 1.0), answer(10.0, Some("x z"), b_quality));
        }
        let figures = comparison.figures();
        assert!(
            matches!(&figures.verdict, Verdict::LowerQuality { worse, .. } if worse == "b"),
            "{:?}",
            figures.verdict
        );
        assert_eq!(figures.agreement, Some(0.0));
    }

    #[test]
    fn the_same_variant_twice_stays_undecided() {
        let mut rng = SplitMix64::new(3);
        let mut comparison = Comparison::new("a", "a-copy");
        for _ in 0..500 {
            let a = 100.0 * (0.2 * rng.next_normal()).exp();
            let b = 100.0 * (0.2 * rng.next_normal()).exp();
            comparison.push(answer(a, Some("x"), 1.0), answer(b, Some("x"), 1.0));
        }
        let figures = comparison.figures();
        assert_eq!(figures.verdict, Verdict::Undecided { pairs: 500 });
        assert_eq!(figures.verdict.to_string(), "no difference yet (n=500)");
        assert!(figures.latency_p.unwrap() > 0.01);
    }
}
