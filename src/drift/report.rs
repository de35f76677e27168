//! A live window of request profiles against a frozen reference: one score per feature and an
//! overall verdict. Numbers per request (brightness, contrast, saturation, size, caption
//! length, repeated pairs) get Evidently's default test; the pooled hue and word distributions
//! get the Jensen-Shannon distance (with PSI beside it); the share of live caption words the
//! reference never used is its own score. The dataset drifts, as in Evidently's
//! `DatasetDriftMetric`, when at least `drift_share` of the features do. Pure: no clock, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::choose::{DISTANCE_THRESHOLD, P_THRESHOLD, TestKind, column_drift_two_sample};
use super::distance::{bin_counts, jensen_shannon, psi};
use super::mmd::mmd_test;
use super::profile::{HUE_BINS, RequestProfile};

/// Share of features that must drift for the window to (`service.drift.drift_share`; Evidently
/// defaults to 0.5). 0.25 is four of the fourteen features: on 780 pairs of stable windows of
/// the bundled model through the server, three drifted (one per 260 windows), where 0.2 (three
/// features) gave 17, one per 46 (`make bench-drift-calibration`).
pub const DRIFT_SHARE: f64 = 0.25;
/// Share of live caption words outside the reference's vocabulary that counts as drift.
pub const NEW_WORDS_THRESHOLD: f64 = 0.05;

/// One feature's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureScore {
    pub feature: String,
    /// The test (Evidently's default for columns; Jensen-Shannon for distributions).
    pub test: TestKind,
    /// The test's statistic: a p-value for p-value tests, else a distance or share.
    pub score: f64,
    pub drifted: bool,
    /// The population stability index of the same bins, for distributions.
    pub psi: Option<f64>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub reference_size: usize,
    pub live_size: usize,
    pub features: Vec<FeatureScore>,
    /// Share of features that drifted.
    pub drifted_share: f64,
    pub detected: bool,
}

/// Relabellings in the MMD permutation test (Alibi Detect's default).
pub const MMD_PERMUTATIONS: usize = 100;
/// The permutation test's seed: the same windows give the same p-value.
const MMD_SEED: u64 = 14;

/// Reads one number off a request's profile.
type Feature = fn(&RequestProfile) -> f64;

/// The numeric features of a request, by name.
const NUMERIC: [(&str, Feature); 9] = [
    ("brightness_mean", |p| p.image.brightness_mean),
    ("brightness_std", |p| p.image.brightness_std),
    ("saturation_mean", |p| p.image.saturation_mean),
    ("width", |p| f64::from(p.image.width)),
    ("height", |p| f64::from(p.image.height)),
    ("aspect", |p| p.image.aspect()),
    ("caption_tokens", |p| p.caption.tokens as f64),
    ("caption_words", |p| p.caption.words.len() as f64),
    ("repeated_bigrams", |p| p.caption.repeated_bigrams as f64),
];

/// Format names as numbers (a categorical column for Evidently's test).
fn format_code(format: &str) -> f64 {
    ["png", "jpeg", "gif", "webp", "bmp", "tiff"].iter().position(|f| *f == format).unwrap_or(6) as f64
}

/// The hue distribution of a window, each image weighing the same (its bins as shares of its
/// coloured pixels): pooled pixel counts would let a few very colourful images decide it.
fn hue_totals(profiles: &[RequestProfile]) -> Vec<f64> {
    let mut totals = vec![0.0; HUE_BINS];
    for profile in profiles {
        let coloured: u32 = profile.image.hue_counts.iter().sum();
        if coloured == 0 {
            continue;
        }
        for (total, count) in totals.iter_mut().zip(profile.image.hue_counts) {
            *total += f64::from(count) / f64::from(coloured);
        }
    }
    totals
}

fn word_counts(profiles: &[RequestProfile]) -> BTreeMap<&str, f64> {
    let mut counts = BTreeMap::new();
    for word in profiles.iter().flat_map(|p| &p.caption.words) {
        *counts.entry(word.as_str()).or_insert(0.0) += 1.0;
    }
    counts
}

fn distribution(feature: &str, reference: &[f64], live: &[f64]) -> Option<FeatureScore> {
    if reference.iter().sum::<f64>() <= 0.0 || live.iter().sum::<f64>() <= 0.0 {
        return None;
    }
    let binned = bin_counts(reference, live);
    let score = jensen_shannon(&binned);
    Some(FeatureScore {
        feature: feature.to_owned(),
        test: TestKind::JensenShannon,
        score,
        drifted: score >= DISTANCE_THRESHOLD,
        psi: Some(psi(&binned)),
    })
}

/// The MMD permutation test on the pooled embeddings, when both sides have at least two of
/// one length.
fn embedding_drift(reference: &[RequestProfile], live: &[RequestProfile]) -> Option<FeatureScore> {
    let vectors = |profiles: &[RequestProfile]| profiles.iter().filter_map(|p| p.embedding.clone()).collect::<Vec<_>>();
    let (x, y) = (vectors(reference), vectors(live));
    let length = x.first()?.len();
    if x.iter().chain(&y).any(|v| v.len() != length) {
        return None;
    }
    let result = mmd_test(&x, &y, MMD_PERMUTATIONS, MMD_SEED)?;
    Some(FeatureScore {
        feature: "embedding".to_owned(),
        test: TestKind::Mmd,
        score: result.p,
        drifted: result.p < P_THRESHOLD,
        psi: None,
    })
}

/// Compares `live` with `reference`: drift when at least `drift_share` of the features drift.
/// Features that cannot be judged yet (a side empty, no words, no hue) are left out.
pub fn compare(reference: &[RequestProfile], live: &[RequestProfile], drift_share: f64) -> DriftReport {
    let mut features = Vec::new();
    for (name, value) in NUMERIC {
        let column = |profiles: &[RequestProfile]| profiles.iter().map(value).collect::<Vec<f64>>();
        if let Some(drift) = column_drift_two_sample(&column(reference), &column(live)) {
            features.push(FeatureScore {
                feature: name.to_owned(),
                test: drift.test,
                score: drift.score,
                drifted: drift.drifted,
                psi: None,
            });
        }
    }
    let formats =
        |profiles: &[RequestProfile]| profiles.iter().map(|p| format_code(&p.image.format)).collect::<Vec<_>>();
    if let Some(drift) = column_drift_two_sample(&formats(reference), &formats(live)) {
        features.push(FeatureScore {
            feature: "format".to_owned(),
            test: drift.test,
            score: drift.score,
            drifted: drift.drifted,
            psi: None,
        });
    }
    features.extend(distribution("hue", &hue_totals(reference), &hue_totals(live)));
    let (reference_words, live_words) = (word_counts(reference), word_counts(live));
    let vocabulary: BTreeSet<&str> = reference_words.keys().chain(live_words.keys()).copied().collect();
    let counts = |counts: &BTreeMap<&str, f64>| {
        vocabulary.iter().map(|w| counts.get(w).copied().unwrap_or(0.0)).collect::<Vec<_>>()
    };
    features.extend(distribution("words", &counts(&reference_words), &counts(&live_words)));
    let live_total: f64 = live_words.values().sum();
    if live_total > 0.0 && !reference_words.is_empty() {
        let new: f64 = live_words.iter().filter(|(w, _)| !reference_words.contains_key(*w)).map(|(_, c)| c).sum();
        let share = new / live_total;
        features.push(FeatureScore {
            feature: "new_words".to_owned(),
            test: TestKind::NewWords,
            score: share,
            drifted: share >= NEW_WORDS_THRESHOLD,
            psi: None,
        });
    }
    features.extend(embedding_drift(reference, live));
    let drifted = features.iter().filter(|f| f.drifted).count();
    let drifted_share = if features.is_empty() { 0.0 } else { drifted as f64 / features.len() as f64 };
    DriftReport {
        reference_size: reference.len(),
        live_size: live.len(),
        detected: !features.is_empty() && drifted_share >= drift_share,
        drifted_share,
        features,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::drift::profile::{CaptionProfile, ImageProfile};
    use crate::stats::bootstrap::SplitMix64;

    /// A request like the scene world's: a light background, one coloured shape, a short caption.
    fn scene(rng: &mut SplitMix64, dark: bool) -> RequestProfile {
        let brightness = if dark { 0.15 + 0.05 * rng.next_f64() } else { 0.75 + 0.1 * rng.next_f64() };
        let mut hue_counts = [0u32; HUE_BINS];
        hue_counts[(rng.next_u64() % HUE_BINS as u64) as usize] = 300 + (rng.next_u64() % 200) as u32;
        let colours = ["red", "green", "blue", "yellow"];
        let shapes = ["circle", "square", "triangle"];
        let caption = format!(
            "a {} {}",
            colours[(rng.next_u64() % 4) as usize],
            if dark { "shape on black" } else { shapes[(rng.next_u64() % 3) as usize] }
        );
        RequestProfile {
            image: ImageProfile {
                brightness_mean: brightness,
                brightness_std: 0.2 + 0.05 * rng.next_f64(),
                saturation_mean: 0.3 + 0.1 * rng.next_f64(),
                hue_counts,
                width: 128,
                height: 128,
                format: if rng.next_u64().is_multiple_of(2) { "png" } else { "jpeg" }.to_owned(),
            },
            caption: CaptionProfile::of(&caption, 5),
            embedding: None,
        }
    }

    #[test]
    fn a_stable_stream_does_not_drift_and_a_dark_one_does() {
        let mut rng = SplitMix64::new(14);
        let reference: Vec<RequestProfile> = (0..500).map(|_| scene(&mut rng, false)).collect();
        let same: Vec<RequestProfile> = (0..300).map(|_| scene(&mut rng, false)).collect();
        let report = compare(&reference, &same, DRIFT_SHARE);
        assert!(!report.detected, "{report:#?}");
        assert_eq!((report.reference_size, report.live_size), (500, 300));
        let names: Vec<&str> = report.features.iter().map(|f| f.feature.as_str()).collect();
        assert!(names.contains(&"hue") && names.contains(&"words") && names.contains(&"new_words"), "{names:?}");

        let dark: Vec<RequestProfile> = (0..300).map(|_| scene(&mut rng, true)).collect();
        let report = compare(&reference, &dark, DRIFT_SHARE);
        assert!(report.detected, "{report:#?}");
        let drifted = |name: &str| report.features.iter().find(|f| f.feature == name).unwrap().drifted;
        assert!(drifted("brightness_mean") && drifted("words") && drifted("new_words"));
        assert!(!drifted("width"), "the size did not change");
    }

    /// False alarms on a stable stream of simulated scene profiles: 100 live windows of 300
    /// against one reference of 500, all from the same generator. (Printed with --nocapture.)
    #[test]
    fn stable_windows_rarely_raise_a_false_alarm() {
        let mut rng = SplitMix64::new(1414);
        let reference: Vec<RequestProfile> = (0..500).map(|_| scene(&mut rng, false)).collect();
        let windows = 100;
        let alarms = (0..windows)
            .filter(|_| {
                let live: Vec<RequestProfile> = (0..300).map(|_| scene(&mut rng, false)).collect();
                compare(&reference, &live, DRIFT_SHARE).detected
            })
            .count();
        println!("stable stream: {alarms} false alarms in {windows} windows");
        assert!(alarms <= 5, "{alarms} false alarms in {windows} windows");
    }
}
