//! Drift detection: whether the images people send, or the captions the model
//! writes, stop looking like a reference. This part holds the tests, pure functions on
//! samples checked against scipy and Evidently (`tests/fixtures/drift_stats.json`, made by
//! `tools/make_drift_fixtures.py`): [`ks`] (two-sample Kolmogorov-Smirnov, exact p),
//! [`distance`] (normed Wasserstein, Jensen-Shannon and PSI on Evidently's bins, Evidently's
//! choice of test by reference size), [`mmd`] (maximum mean discrepancy with a permutation
//! test, for embeddings; [`embedding`] reduces them to 32 numbers), [`choose`] (Evidently's default test per column, with its z and
//! chi-square tests), [`profile`] (what is kept of each request: image and caption features),
//! [`report`] (a live window against a reference: per-feature scores and a verdict). Beside
//! them, [`scenes`] draws the scene world and its shifts (`crate::traffic` sends them to a
//! server). No I/O here.

pub mod choose;
pub mod distance;
pub mod embedding;
pub mod ks;
pub mod mmd;
pub mod profile;
pub mod report;
pub mod scenes;

#[cfg(test)]
mod tests {
    //! Every test against `tests/fixtures/drift_stats.json` (scipy, Evidently, numpy).
    #![allow(clippy::unwrap_used)]

    use super::distance::{bin_numbers, jensen_shannon, normed_wasserstein, psi, wasserstein};
    use super::ks::ks_2samp;
    use super::mmd::mmd_test;
    use crate::stats::fixtures::{close, floats};

    fn load() -> serde_json::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/drift_stats.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn name(case: &serde_json::Value) -> &str {
        case["name"].as_str().unwrap()
    }

    #[test]
    fn ks_matches_scipy() {
        for case in load()["ks"].as_array().unwrap() {
            let result = ks_2samp(&floats(&case["a"]), &floats(&case["b"])).unwrap();
            close(result.statistic, case["statistic"].as_f64().unwrap(), 1e-12, name(case));
            close(result.p, case["p"].as_f64().unwrap(), 1e-9, name(case));
        }
        assert!(ks_2samp(&[], &[1.0]).is_none());
    }

    #[test]
    fn distances_match_evidently() {
        for case in load()["distance"].as_array().unwrap() {
            let (reference, live) = (floats(&case["reference"]), floats(&case["live"]));
            let what = |test: &str| format!("{} {test}", name(case));
            close(wasserstein(&reference, &live).unwrap(), case["wasserstein"].as_f64().unwrap(), 1e-9, &what("W1"));
            close(
                normed_wasserstein(&reference, &live).unwrap(),
                case["normed_wasserstein"].as_f64().unwrap(),
                1e-9,
                &what("normed W1"),
            );
            let binned = bin_numbers(&reference, &live);
            close(jensen_shannon(&binned), case["jensenshannon"].as_f64().unwrap(), 1e-9, &what("JS"));
            close(psi(&binned), case["psi"].as_f64().unwrap(), 1e-9, &what("PSI"));
        }
    }

    #[test]
    fn the_default_test_and_its_verdict_match_evidentlys() {
        use super::choose::{TestKind, column_drift};
        for case in load()["default"].as_array().unwrap() {
            let drift = column_drift(&floats(&case["reference"]), &floats(&case["live"])).unwrap();
            let expected = match case["test"].as_str().unwrap() {
                "z" => TestKind::Z,
                "chisquare" => TestKind::ChiSquare,
                "ks" => TestKind::Ks,
                "jensenshannon" => TestKind::JensenShannon,
                "wasserstein" => TestKind::Wasserstein,
                other => panic!("unknown test {other}"),
            };
            assert_eq!(drift.test, expected, "{}", name(case));
            close(drift.score, case["score"].as_f64().unwrap(), 1e-9, name(case));
            assert_eq!(drift.drifted, case["drifted"].as_bool().unwrap(), "{}", name(case));
        }
    }

    #[test]
    fn mmd_matches_the_numpy_reference_with_the_same_permutations() {
        for case in load()["mmd"].as_array().unwrap() {
            let rows = |value: &serde_json::Value| -> Vec<Vec<f32>> {
                value
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|row| floats(row).into_iter().map(|v| v as f32).collect())
                    .collect()
            };
            let permutations = case["permutations"].as_u64().unwrap() as usize;
            let result =
                mmd_test(&rows(&case["x"]), &rows(&case["y"]), permutations, case["seed"].as_u64().unwrap()).unwrap();
            close(result.sigma, case["sigma"].as_f64().unwrap(), 1e-6, name(case));
            close(result.mmd2, case["mmd2"].as_f64().unwrap(), 1e-6, name(case));
            close(result.p, case["p"].as_f64().unwrap(), 1e-12, name(case));
        }
    }
}
