//! What `capwatch plan` reads from a capwatch server's `/metrics`: per model, the service-time
//! histogram (`capwatch_caption_service_seconds`) and the workers serving it
//! (`capwatch_workers_alive`). A small reader of the OpenMetrics text lines it needs; pure.

use std::collections::BTreeMap;

use super::queueing::{BatchedService, ServiceTimes};
use crate::server::metrics::{BATCH_CLASSES, CAPTION_SERVICE, WORKERS_ALIVE};

/// One model's measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub model: String,
    pub workers: usize,
    /// Captions observed.
    pub count: f64,
    /// Every caption's service time, whatever its batch.
    pub service: ServiceTimes,
    /// By batch size class, as the simulation draws them.
    pub batched: BatchedService,
    /// Captions per batch size class label (`1`, `2`, `3-4`, `5-8`, `9+`) that had any.
    pub per_class: Vec<(&'static str, f64)>,
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

/// Per (model, batch size class label), the service-time histogram's (upper bound,
/// cumulative count) pairs, sorted.
pub fn service_buckets(exposition: &str) -> BTreeMap<(String, String), Vec<(f64, f64)>> {
    let bucket_name = format!("{CAPTION_SERVICE}_seconds_bucket");
    let mut buckets: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for (name, labels, value) in exposition.lines().filter_map(sample) {
        let (Some(model), Some(le)) = (labels.get("model"), labels.get("le")) else { continue };
        if name != bucket_name {
            continue;
        }
        let batch = labels.get("batch").copied().unwrap_or("1");
        let bound = if *le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        if !bound.is_nan() {
            buckets.entry(((*model).to_owned(), batch.to_owned())).or_default().push((bound, value));
        }
    }
    buckets.values_mut().for_each(|points| points.sort_by(|a, b| a.0.total_cmp(&b.0)));
    buckets
}

/// Histograms with the same bounds added up.
pub fn merged<'a>(histograms: impl Iterator<Item = &'a Vec<(f64, f64)>>) -> Vec<(f64, f64)> {
    let mut total: Vec<(f64, f64)> = Vec::new();
    for histogram in histograms {
        for &(bound, count) in histogram {
            match total.iter_mut().find(|(b, _)| *b == bound) {
                Some(entry) => entry.1 += count,
                None => total.push((bound, count)),
            }
        }
    }
    total.sort_by(|a, b| a.0.total_cmp(&b.0));
    total
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

/// One model's measurements from its histograms (`buckets` as [`service_buckets`] gives them,
/// or differences of two readings); `workers` as the server said.
pub fn model_measured(
    buckets: &BTreeMap<(String, String), Vec<(f64, f64)>>,
    model: &str,
    workers: usize,
    max_batch: usize,
) -> Option<Measured> {
    let all = merged(buckets.iter().filter(|((m, _), _)| m == model).map(|(_, points)| points));
    let service = service_times(&all)?;
    let mut classes = Vec::new();
    let mut per_class = Vec::new();
    for (label, low, high) in BATCH_CLASSES {
        let Some(points) = buckets.get(&(model.to_owned(), label.to_owned())) else { continue };
        if let Some(times) = service_times(points) {
            classes.push((low, high, times));
            per_class.push((label, points.last().map_or(0.0, |p| p.1)));
        }
    }
    Some(Measured {
        model: model.to_owned(),
        workers,
        count: all.last()?.1,
        batched: BatchedService::new(classes, max_batch)?,
        per_class,
        service,
    })
}

/// Every model with captions observed in `exposition`, by name; workers batch up to
/// `max_batch` waiting requests (the server's `max_batch_size`).
pub fn measured(exposition: &str, max_batch: usize) -> Vec<Measured> {
    let workers = workers(exposition);
    let buckets = service_buckets(exposition);
    let models: std::collections::BTreeSet<&String> = buckets.keys().map(|(model, _)| model).collect();
    models
        .into_iter()
        .filter_map(|model| model_measured(&buckets, model, workers.get(model).copied().unwrap_or(0), max_batch))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_service_histogram_and_workers_are_read_per_model() {
        let text = "# TYPE capwatch_caption_service_seconds histogram\n\
            capwatch_caption_service_seconds_bucket{model=\"a\",batch=\"1\",le=\"0.01\"} 10\n\
            capwatch_caption_service_seconds_bucket{model=\"a\",batch=\"1\",le=\"0.02\"} 30\n\
            capwatch_caption_service_seconds_bucket{model=\"a\",batch=\"1\",le=\"+Inf\"} 30\n\
            capwatch_caption_service_seconds_count{model=\"a\",batch=\"1\"} 30\n\
            capwatch_caption_service_seconds_bucket{model=\"a\",batch=\"3-4\",le=\"0.01\"} 0\n\
            capwatch_caption_service_seconds_bucket{model=\"a\",batch=\"3-4\",le=\"0.02\"} 10\n\
            capwatch_caption_service_seconds_bucket{model=\"a\",batch=\"3-4\",le=\"+Inf\"} 10\n\
            capwatch_caption_service_seconds_bucket{model=\"b\",batch=\"1\",le=\"0.01\"} 0\n\
            capwatch_caption_service_seconds_bucket{model=\"b\",batch=\"1\",le=\"+Inf\"} 0\n\
            capwatch_workers_alive{model=\"a\"} 2\n\
            capwatch_workers_alive{model=\"b\"} 1\n\
            # EOF\n";
        let models = measured(text, 8);
        assert_eq!(models.len(), 1, "b has no captions yet");
        let a = &models[0];
        assert_eq!((a.model.as_str(), a.workers, a.count), ("a", 2, 40.0));
        assert_eq!(a.per_class, vec![("1", 30.0), ("3-4", 10.0)]);
        assert!((a.service.quantile(0.25) - 0.01).abs() < 1e-12);
        assert!((a.service.quantile(1.0) - 0.02).abs() < 1e-12);
        // Alone: a third under 10 ms; in batches of 3-4: 10-20 ms; 2 was never measured: as alone.
        assert!((a.batched.draw(1, 1.0 / 3.0) - 0.01).abs() < 1e-12);
        assert!((a.batched.draw(4, 0.5) - 0.015).abs() < 1e-12);
        assert_eq!(a.batched.for_batch(2), a.batched.for_batch(1));
        assert_eq!(a.batched.max_batch, 4, "no batch larger than any measured");
    }
}
