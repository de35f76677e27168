//! What `capwatch plan` reads from a capwatch server's `/metrics`: per model, the service-time
//! histogram (`capwatch_caption_service_seconds`) and the workers serving it
//! (`capwatch_workers_alive`). A small reader of the OpenMetrics text lines it needs; pure.

use std::collections::BTreeMap;

use super::queueing::ServiceTimes;
use crate::server::metrics::{CAPTION_SERVICE, WORKERS_ALIVE};

/// One model's measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub model: String,
    pub workers: usize,
    /// Captions observed.
    pub count: f64,
    pub service: ServiceTimes,
}

/// A sample line: its name, its labels and its value.
fn sample(line: &str) -> Option<(&str, BTreeMap<&str, &str>, f64)> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        other => other.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let mut parsed = BTreeMap::new();
    for pair in labels.split(',').filter(|p| !p.is_empty()) {
        let (key, quoted) = pair.split_once('=')?;
        parsed.insert(key, quoted.trim_matches('"'));
    }
    Some((name, parsed, value))
}

/// Per model, the service-time histogram's (upper bound, cumulative count) pairs, sorted.
pub fn service_buckets(exposition: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let bucket_name = format!("{CAPTION_SERVICE}_seconds_bucket");
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (name, labels, value) in exposition.lines().filter_map(sample) {
        let (Some(model), Some(le)) = (labels.get("model"), labels.get("le")) else { continue };
        if name != bucket_name {
            continue;
        }
        let bound = if *le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        if !bound.is_nan() {
            buckets.entry((*model).to_owned()).or_default().push((bound, value));
        }
    }
    buckets.values_mut().for_each(|points| points.sort_by(|a, b| a.0.total_cmp(&b.0)));
    buckets
}

/// Workers per model (`capwatch_workers_alive`).
fn workers(exposition: &str) -> BTreeMap<String, usize> {
    exposition
        .lines()
        .filter_map(sample)
        .filter(|(name, ..)| *name == WORKERS_ALIVE)
        .filter_map(|(_, labels, value)| Some(((*labels.get("model")?).to_owned(), value.max(0.0) as usize)))
        .collect()
}

/// A service-time distribution from (upper bound, cumulative count) pairs.
pub fn service_times(points: &[(f64, f64)]) -> Option<ServiceTimes> {
    let (bounds, counts): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
    ServiceTimes::from_histogram(&bounds, &counts)
}

/// Every model with captions observed in `exposition`, by name.
pub fn measured(exposition: &str) -> Vec<Measured> {
    let workers = workers(exposition);
    service_buckets(exposition)
        .into_iter()
        .filter_map(|(model, points)| {
            let service = service_times(&points)?;
            Some(Measured {
                workers: workers.get(&model).copied().unwrap_or(0),
                count: points.last()?.1,
                model,
                service,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_service_histogram_and_workers_are_read_per_model() {
        let text = "# TYPE capwatch_caption_service_seconds histogram\n\
            capwatch_caption_service_seconds_bucket{model=\"a\",le=\"0.01\"} 10\n\
            capwatch_caption_service_seconds_bucket{model=\"a\",le=\"0.02\"} 40\n\
            capwatch_caption_service_seconds_bucket{model=\"a\",le=\"+Inf\"} 40\n\
            capwatch_caption_service_seconds_count{model=\"a\"} 40\n\
            capwatch_caption_service_seconds_bucket{model=\"b\",le=\"0.01\"} 0\n\
            capwatch_caption_service_seconds_bucket{model=\"b\",le=\"+Inf\"} 0\n\
            capwatch_workers_alive{model=\"a\"} 2\n\
            capwatch_workers_alive{model=\"b\"} 1\n\
            # EOF\n";
        let models = measured(text);
        assert_eq!(models.len(), 1, "b has no captions yet");
        let a = &models[0];
        assert_eq!((a.model.as_str(), a.workers, a.count), ("a", 2, 40.0));
        assert!((a.service.quantile(0.25) - 0.01).abs() < 1e-12);
        assert!((a.service.quantile(1.0) - 0.02).abs() < 1e-12);
    }
}
