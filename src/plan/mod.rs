//! Capacity planning (`capwatch plan`): how many replicas × workers a traffic
//! level needs to keep its P95 within a target, from measured service times. [`queueing`]
//! holds the models (the measured distribution, a discrete-event simulation, M/M/c as a
//! cross-check), [`scrape`] reads them off a server's `/metrics`, [`session`] off a past
//! dashboard session, and [`table`] writes the answer as people read it. Each replica is modelled as
//! its own FIFO queue with `workers` workers and an even share of the Poisson arrivals (a
//! Kubernetes Service spreads connections; it does not keep one global queue); a free worker
//! takes every waiting request up to the batch size, as the server's workers do, and each
//! caption takes a time measured in batches of its size. Pure.

pub mod queueing;
pub mod scrape;
pub mod session;
pub mod table;

use queueing::{BatchedService, MmC, simulate_batched};

/// Requests simulated per candidate (a tenth of them warm-up).
pub const SIMULATED_REQUESTS: usize = 40_000;
/// The simulation's seed: the same measurements give the same plan.
const SEED: u64 = 15;

/// The answer for one traffic level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned {
    pub rate_per_s: f64,
    pub replicas: usize,
    pub workers_per_replica: usize,
    /// Simulated response times (queue + service), seconds.
    pub p50_s: f64,
    pub p95_s: f64,
    pub p99_s: f64,
    /// Busy share of the workers.
    pub utilisation: f64,
    /// Mean images per batch.
    pub mean_batch: f64,
    /// M/M/c's P95 for the same replica (exponential service with the measured mean).
    pub mmc_p95_s: Option<f64>,
}

/// Why no plan fits.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the P95 target ({target_ms:.1} ms) is below the measured P95 service time itself ({service_p95_ms:.1} ms): no number of replicas meets it; a faster model or machine is needed"
    )]
    TargetBelowServiceTime { target_ms: f64, service_p95_ms: f64 },
    #[error("more than {max} replicas would be needed")]
    TooManyReplicas { max: usize },
    #[error("nothing to plan: the rate, the target and the workers must be positive")]
    Nothing,
}

/// One replica's simulated figures at `rate_per_s` (None: it cannot keep up).
fn replica(service: &BatchedService, workers: usize, rate_per_s: f64) -> Option<queueing::Simulated> {
    simulate_batched(service, workers, rate_per_s, SIMULATED_REQUESTS, SEED)
}

/// The most captions per second one worker can make: the best batch size's.
fn worker_capacity(service: &BatchedService) -> f64 {
    (1..=service.max_batch).map(|b| b as f64 / service.mean(b).max(f64::MIN_POSITIVE)).fold(0.0, f64::max)
}

/// M/M/c's P95 for one replica (exponential service, the mean of a caption made alone).
fn mmc_p95(service: &BatchedService, workers: usize, rate_per_s: f64) -> Option<f64> {
    MmC { servers: workers, rate_per_s, mean_service_s: service.mean_alone() }.response_quantile(0.95)
}

/// The fewest replicas of `workers` workers whose simulated P95 at `rate_per_s` in all is at
/// most `p95_target_s` (at most `max_replicas`).
pub fn plan(
    service: &BatchedService,
    workers: usize,
    rate_per_s: f64,
    p95_target_s: f64,
    max_replicas: usize,
) -> Result<Planned, PlanError> {
    if workers == 0 || rate_per_s <= 0.0 || p95_target_s <= 0.0 || max_replicas == 0 {
        return Err(PlanError::Nothing);
    }
    let service_p95 = service.draw(1, 0.95);
    if service_p95 > p95_target_s {
        return Err(PlanError::TargetBelowServiceTime {
            target_ms: p95_target_s * 1e3,
            service_p95_ms: service_p95 * 1e3,
        });
    }
    let meets = |replicas: usize| {
        replica(service, workers, rate_per_s / replicas as f64).filter(|simulated| simulated.p95_s <= p95_target_s)
    };
    // Enough replicas to keep up at all, then doubling until the target holds, then halving back.
    let keep_up = (rate_per_s / (worker_capacity(service) * workers as f64)).floor() as usize + 1;
    let mut low = keep_up.max(1).min(max_replicas);
    let mut high = low;
    while meets(high).is_none() {
        if high >= max_replicas {
            return Err(PlanError::TooManyReplicas { max: max_replicas });
        }
        low = high + 1;
        high = (high * 2).min(max_replicas);
    }
    while low < high {
        let middle = (low + high) / 2;
        if meets(middle).is_some() {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let one =
        predict(service, workers, rate_per_s / high as f64).ok_or(PlanError::TooManyReplicas { max: max_replicas })?;
    Ok(Planned { rate_per_s, replicas: high, ..one })
}

/// What one replica of `workers` workers does at `rate_per_s` (for checking a model against
/// measurements): None when it cannot keep up.
pub fn predict(service: &BatchedService, workers: usize, rate_per_s: f64) -> Option<Planned> {
    let simulated = replica(service, workers, rate_per_s)?;
    Some(Planned {
        rate_per_s,
        replicas: 1,
        workers_per_replica: workers,
        p50_s: simulated.p50_s,
        p95_s: simulated.p95_s,
        p99_s: simulated.p99_s,
        utilisation: simulated.utilisation,
        mean_batch: simulated.mean_batch,
        mmc_p95_s: mmc_p95(service, workers, rate_per_s),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ten_ms() -> BatchedService {
        // Service times spread evenly over 8–12 ms, one request at a time.
        BatchedService::unbatched(
            queueing::ServiceTimes::from_histogram(&[0.008, 0.012, f64::INFINITY], &[0.0, 100.0, 100.0]).unwrap(),
        )
    }

    #[test]
    fn the_plan_is_the_fewest_replicas_that_meet_the_target() {
        let service = ten_ms();
        // 2 workers do at most 200 captions/s; at 50/s one replica is nearly idle.
        let light = plan(&service, 2, 50.0, 0.05, 100).unwrap();
        assert_eq!(light.replicas, 1);
        assert!(light.p95_s < 0.02 && (light.utilisation - 0.25).abs() < 0.02, "{light:?}");
        // 1000/s needs at least 6 replicas of 2 (5 would be 100 % busy); the target decides how many more.
        let heavy = plan(&service, 2, 1000.0, 0.02, 100).unwrap();
        assert!(heavy.replicas >= 6, "{heavy:?}");
        assert!(heavy.p95_s <= 0.02);
        let fewer = predict(&service, 2, 1000.0 / (heavy.replicas - 1) as f64);
        assert!(fewer.is_none_or(|p| p.p95_s > 0.02), "one replica fewer misses the target: {fewer:?}");
        // A looser target needs no more replicas.
        assert!(plan(&service, 2, 1000.0, 0.1, 100).unwrap().replicas <= heavy.replicas);
    }

    #[test]
    fn impossible_targets_say_why() {
        let service = ten_ms();
        assert!(matches!(plan(&service, 2, 10.0, 0.005, 100), Err(PlanError::TargetBelowServiceTime { .. })));
        assert_eq!(plan(&service, 2, 1e6, 0.05, 10), Err(PlanError::TooManyReplicas { max: 10 }));
        assert_eq!(plan(&service, 0, 10.0, 0.05, 10), Err(PlanError::Nothing));
    }
}
