//! The A/B comparison the dashboard runs when the server has two or more model variants:
//! every test image goes to every variant by name in one round, and each round's answers
//! pair the first variant (the baseline) with each of the others in a [`Comparison`].
//! Pure: no clock, no I/O. The figures (bootstrap intervals) are recomputed once per test
//! cycle, not per frame.

use crate::protocol::shadow::ShadowReport;
use crate::stats::comparison::{Answer, Comparison, Figures, Verdict};

use super::prober::{InferenceProbe, VariantTag};

/// The comparison of one server's variants.
#[derive(Debug, Clone)]
pub struct AbState {
    /// The variants in the server's order; the first is the baseline.
    pub variants: Vec<String>,
    /// `variants[i + 1]` against `variants[0]`.
    comparisons: Vec<Comparison>,
    /// The figures as of the last test cycle, one per comparison.
    pub figures: Vec<Figures>,
    /// The round being collected: each variant's answer so far.
    pending: Option<(u64, Vec<Option<Answer>>)>,
    /// Rounds where every variant answered (complete pairs).
    pub rounds: u64,
    /// The server's shadow copies, from its latest health check.
    pub shadow: Option<ShadowReport>,
    /// Verdicts already announced in the log, one per comparison.
    announced: Vec<bool>,
}

impl AbState {
    /// A fresh comparison of `variants` (two or more).
    pub fn new(variants: Vec<String>) -> Self {
        let baseline = variants.first().cloned().unwrap_or_default();
        let comparisons: Vec<Comparison> =
            variants.iter().skip(1).map(|other| Comparison::new(&baseline, other)).collect();
        let figures = comparisons.iter().map(Comparison::figures).collect();
        let announced = vec![false; comparisons.len()];
        Self { variants, comparisons, figures, pending: None, rounds: 0, shadow: None, announced }
    }

    /// Takes one variant's answer; once every variant answered the round, pairs them.
    pub fn record(&mut self, tag: &VariantTag, probe: &InferenceProbe) {
        let Some(index) = self.variants.iter().position(|name| *name == tag.name) else { return };
        let answer = Answer {
            latency_ms: probe.latency.as_secs_f64() * 1000.0,
            caption: probe.result.as_ref().ok().map(|r| r.caption.clone()),
            quality: probe.result.as_ref().ok().map(|r| r.quality.score()),
        };
        let fresh = || (tag.round, vec![None; self.variants.len()]);
        let (round, answers) = self.pending.get_or_insert_with(fresh);
        if *round != tag.round {
            // A round cut short (a restart, a pause): its answers cannot pair.
            *round = tag.round;
            answers.iter_mut().for_each(|a| *a = None);
        }
        answers[index] = Some(answer);
        if answers.iter().all(Option::is_some) {
            let answers: Vec<Answer> = answers.drain(..).flatten().collect();
            self.pending = None;
            self.rounds += 1;
            for (comparison, other) in self.comparisons.iter_mut().zip(answers.iter().skip(1)) {
                comparison.push(answers[0].clone(), other.clone());
            }
        }
    }

    /// The figures now (for the summary at the end; the pane reads [`Self::figures`]).
    pub fn current_figures(&self) -> Vec<Figures> {
        self.comparisons.iter().map(Comparison::figures).collect()
    }

    /// Whether the round of `tag` already has an answer (so `tag`'s is not its first).
    pub fn has_answer_in(&self, tag: &VariantTag) -> bool {
        self.pending.as_ref().is_some_and(|(round, answers)| *round == tag.round && answers.iter().any(Option::is_some))
    }

    /// Recomputes the figures (once per cycle); returns the verdicts reached since the last
    /// call, to announce.
    pub fn refresh(&mut self) -> Vec<Verdict> {
        self.figures = self.comparisons.iter().map(Comparison::figures).collect();
        let mut reached = Vec::new();
        for (figures, announced) in self.figures.iter().zip(self.announced.iter_mut()) {
            if !*announced && !matches!(figures.verdict, Verdict::Undecided { .. }) {
                *announced = true;
                reached.push(figures.verdict.clone());
            }
        }
        reached
    }

    /// The variants found significantly worse than the baseline on errors or quality (the
    /// `ab_worse` rule; a baseline worse than a variant is that variant's good news).
    pub fn worse_variants(&self) -> Vec<&str> {
        self.figures
            .iter()
            .filter_map(|figures| match &figures.verdict {
                Verdict::MoreErrors { worse, .. } | Verdict::LowerQuality { worse, .. } if *worse == figures.b.name => {
                    Some(worse.as_str())
                }
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::dash::prober::CaptionResult;
    use crate::quality::match_keywords;

    fn probe(name: &str, round: u64, latency_ms: u64, ok: bool) -> (VariantTag, InferenceProbe) {
        let result = if ok {
            Ok(CaptionResult {
                caption: "a red circle".to_owned(),
                model_time: None,
                server_total: None,
                server_queue: None,
                quality: match_keywords("a red circle", &["red".to_owned()]),
            })
        } else {
            Err(crate::dash::prober::ProbeError::Http(500))
        };
        let tag = VariantTag { name: name.to_owned(), round };
        let probe = InferenceProbe {
            at: tokio::time::Instant::now(),
            image: "x.png".to_owned(),
            latency: Duration::from_millis(latency_ms),
            result,
            variant: Some(tag.clone()),
        };
        (tag, probe)
    }

    #[test]
    fn rounds_pair_up_and_a_broken_round_is_dropped() {
        let mut ab = AbState::new(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]);
        for (name, round) in [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("c", 2), ("c", 3), ("b", 3), ("a", 3)] {
            let (tag, probe) = probe(name, round, 10, true);
            ab.record(&tag, &probe);
        }
        assert_eq!(ab.rounds, 2, "round 1 lost c's answer");
        ab.refresh();
        assert_eq!(ab.figures.len(), 2);
        assert_eq!((ab.figures[0].b.name.as_str(), ab.figures[1].b.name.as_str()), ("b", "c"));
        assert_eq!(ab.figures[1].pairs, 2);
    }

    #[test]
    fn a_failing_variant_is_called_worse_once() {
        let mut ab = AbState::new(vec!["a".to_owned(), "b".to_owned()]);
        let mut announced = Vec::new();
        for round in 1..=120 {
            for (name, ok) in [("a", true), ("b", round % 2 == 0)] {
                let (tag, probe) = probe(name, round, 10 + round % 7, ok);
                ab.record(&tag, &probe);
            }
            announced.extend(ab.refresh());
        }
        assert_eq!(announced.len(), 1, "{announced:?}");
        assert!(matches!(&announced[0], Verdict::MoreErrors { worse, .. } if worse == "b"), "{announced:?}");
        assert_eq!(ab.worse_variants(), ["b"]);
    }
}
