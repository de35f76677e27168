//! What `capwatch plan --session` reads from a past dashboard session (its JSON Lines
//! metrics file): the server's own time on every probed caption, queue excluded (cycle
//! records' `service_ms`), and the workers it reported. These are one caption at a time —
//! the dashboard's probes never overlap — so the model built from them cannot batch and does
//! not see the CPU a loaded server shares; `/metrics` measured under load is the better
//! input. Pure.

use super::queueing::{BatchedService, ServiceTimes};
use super::scrape::Measured;
use crate::dash::record::Record;

/// Said before a plan from a session: what such a plan cannot know.
pub const ONE_AT_A_TIME: &str = "Note: a session's times are one caption at a time (the probes never overlap): this \
     plan cannot count on batching and does not see the CPU a loaded server shares. The server's /metrics under load \
     is the better input (docs/src/fleet.md, Capacity planning).";

/// Why a session cannot be planned from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(
        "it holds no service times (cycle records carry `service_ms` when the watched server reports its timings, as capwatch does)"
    )]
    NoServiceTimes,
    #[error("it watched several instances ({0}); pick one with --instance")]
    SeveralInstances(String),
    #[error("it has no records of instance {0:?} (it has: {1})")]
    UnknownInstance(String, String),
}

/// The measured service times of `records` (of `instance`, when the session watched several).
pub fn measured(records: &[Record], instance: Option<&str>) -> Result<Measured, SessionError> {
    let mut names: Vec<&str> = Vec::new();
    for name in records.iter().filter_map(|r| r.stamp().instance.as_deref()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let wanted = match (instance, names.as_slice()) {
        (Some(name), _) if !names.contains(&name) => {
            return Err(SessionError::UnknownInstance(name.to_owned(), names.join(", ")));
        }
        (Some(name), _) => Some(name),
        (None, [] | [_]) => None,
        (None, several) => return Err(SessionError::SeveralInstances(several.join(", "))),
    };
    let cycles = records.iter().filter_map(|record| match record {
        Record::Cycle(cycle) if wanted.is_none_or(|name| cycle.stamp.instance.as_deref() == Some(name)) => Some(cycle),
        _ => None,
    });
    let mut samples_s = Vec::new();
    let mut workers = None;
    for cycle in cycles {
        samples_s.extend(cycle.service_ms.iter().map(|ms| ms / 1e3));
        workers = cycle.workers.or(workers);
    }
    let service = ServiceTimes::from_samples(&samples_s).ok_or(SessionError::NoServiceTimes)?;
    let count = samples_s.len() as f64;
    Ok(Measured {
        model: wanted.map_or_else(|| "(the session's server)".to_owned(), |name| format!("(instance {name})")),
        workers: workers.and_then(|w| usize::try_from(w).ok()).unwrap_or(1).max(1),
        count,
        batched: BatchedService::unbatched(service.clone()),
        service,
        per_class: vec![("1", count)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dash::record::tests::every_kind;

    fn with_times(instance: Option<&str>, service_ms: Vec<f64>, workers: Option<u64>) -> Record {
        let Some(Record::Cycle(mut cycle)) = every_kind().into_iter().find(|r| matches!(r, Record::Cycle(_))) else {
            unreachable!("every_kind has a cycle record")
        };
        cycle.stamp.instance = instance.map(str::to_owned);
        cycle.service_ms = service_ms;
        cycle.workers = workers;
        Record::Cycle(cycle)
    }

    #[test]
    fn service_times_come_from_every_cycle_with_the_last_worker_count() {
        let records = [with_times(None, vec![10.0, 30.0], Some(2)), with_times(None, vec![20.0], Some(3))];
        let measured = measured(&records, None).unwrap();
        assert_eq!((measured.count, measured.workers), (3.0, 3));
        let (fastest, slowest) = (measured.service.quantile(0.0), measured.service.quantile(1.0));
        assert!((fastest - 0.010).abs() < 1e-12 && (slowest - 0.030).abs() < 1e-12, "{fastest} {slowest}");
        assert_eq!(measured.batched.for_batch(4), &measured.service, "one at a time: no batching gain");
    }

    #[test]
    fn several_instances_need_a_choice() {
        let records = [with_times(Some("a"), vec![10.0], None), with_times(Some("b"), vec![50.0, 70.0], None)];
        assert_eq!(measured(&records, None), Err(SessionError::SeveralInstances("a, b".to_owned())));
        let b = measured(&records, Some("b")).unwrap();
        assert_eq!((b.count, b.workers), (2.0, 1));
        assert!(matches!(measured(&records, Some("c")), Err(SessionError::UnknownInstance(..))));
        assert_eq!(measured(&[with_times(None, Vec::new(), None)], None), Err(SessionError::NoServiceTimes));
    }
}
