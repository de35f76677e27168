//! Queueing models for capacity planning: a measured service-time
//! distribution ([`ServiceTimes`], from a histogram's buckets or from samples), a discrete-event
//! simulation of `c` workers serving one FIFO queue fed by Poisson arrivals ([`simulate`]), and
//! the M/M/c model as a closed-form cross-check ([`MmC`]: Erlang C and the response-time
//! distribution). Pure: seeded, no clock, no I/O.

use crate::stats::bootstrap::SplitMix64;

/// A service-time distribution as measured: piecewise-linear inverse CDF (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceTimes {
    /// (cumulative probability, seconds), increasing in both; starts at probability 0.
    points: Vec<(f64, f64)>,
}

impl ServiceTimes {
    /// From a Prometheus histogram: upper bounds (seconds, `+Inf` last allowed) and cumulative
    /// counts. Times are spread evenly inside each bucket; the `+Inf` bucket, which has no upper
    /// bound, is taken as the last finite bound (the measurement cannot say more). None without
    /// observations.
    pub fn from_histogram(upper_bounds_s: &[f64], cumulative: &[f64]) -> Option<Self> {
        let total = *cumulative.last()?;
        if total <= 0.0 || upper_bounds_s.len() != cumulative.len() {
            return None;
        }
        let mut points = vec![(0.0, 0.0)];
        let mut last_finite = 0.0f64;
        for (&bound, &count) in upper_bounds_s.iter().zip(cumulative) {
            let at = if bound.is_finite() { bound } else { last_finite };
            last_finite = last_finite.max(at);
            let probability = (count / total).clamp(0.0, 1.0);
            // An empty bucket moves where the next one's times start: a second point at the
            // same probability (the inverse CDF jumps there).
            if let Some(&(previous, time)) = points.last()
                && probability >= previous
                && at > time
            {
                points.push((probability.max(previous), at));
            }
        }
        Some(Self { points })
    }

    /// From observed times (seconds): the empirical distribution, interpolated between order
    /// statistics. None when empty.
    pub fn from_samples(samples_s: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples_s.iter().copied().filter(|s| s.is_finite() && *s >= 0.0).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mut points = vec![(0.0, sorted[0])];
        points.extend(sorted.iter().enumerate().map(|(i, &s)| ((i as f64 + 1.0) / n, s)));
        Some(Self { points })
    }

    /// The time at cumulative probability `u` (0..1).
    pub fn quantile(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        let index = self.points.partition_point(|&(p, _)| p < u);
        match (index.checked_sub(1).map(|i| self.points[i]), self.points.get(index)) {
            (Some((p0, t0)), Some(&(p1, t1))) if p1 > p0 => t0 + (t1 - t0) * (u - p0) / (p1 - p0),
            (_, Some(&(_, t))) | (Some((_, t)), None) => t,
            (None, None) => 0.0,
        }
    }

    /// The mean (the integral of the inverse CDF).
    pub fn mean(&self) -> f64 {
        self.points.windows(2).map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0).sum()
    }
}

/// Service times by the size of the batch a caption was made in: a worker takes up to
/// `max_batch` waiting requests at once and each caption in a batch of `b` takes a time drawn
/// from the class that holds `b` (measured as such, so the batch's slow-down is in it).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchedService {
    /// (smallest batch size, largest, the times measured in such batches), by size.
    classes: Vec<(usize, usize, ServiceTimes)>,
    pub max_batch: usize,
}

impl BatchedService {
    /// One distribution for every caption; one request at a time.
    pub fn unbatched(service: ServiceTimes) -> Self {
        Self { classes: vec![(1, usize::MAX, service)], max_batch: 1 }
    }

    /// Measured classes (any order; None when there is none). Batches are never taken larger
    /// than the largest class measured: a planner must not count on a batching gain nobody saw
    /// (measured only one at a time, the model is M/G/c).
    pub fn new(mut classes: Vec<(usize, usize, ServiceTimes)>, max_batch: usize) -> Option<Self> {
        classes.sort_by_key(|(low, ..)| *low);
        let largest_seen = classes.last()?.1;
        Some(Self { classes, max_batch: max_batch.min(largest_seen).max(1) })
    }

    /// The times for a caption in a batch of `size`: its class as measured, else the nearest
    /// measured class below, else the smallest.
    pub fn for_batch(&self, size: usize) -> &ServiceTimes {
        let class = self.classes.iter().rev().find(|(low, ..)| *low <= size).unwrap_or(&self.classes[0]);
        &class.2
    }

    /// One caption's time in a batch of `size`, at cumulative probability `u`.
    pub fn draw(&self, size: usize, u: f64) -> f64 {
        self.for_batch(size).quantile(u)
    }

    /// Mean time of one caption in a batch of `size`.
    pub fn mean(&self, size: usize) -> f64 {
        self.for_batch(size).mean()
    }

    /// Mean time of a caption made alone.
    pub fn mean_alone(&self) -> f64 {
        self.mean(1)
    }
}

/// What the simulation measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulated {
    /// Response time (wait + service) percentiles, seconds.
    pub p50_s: f64,
    pub p95_s: f64,
    pub p99_s: f64,
    pub mean_wait_s: f64,
    /// Busy share of the workers.
    pub utilisation: f64,
    /// Mean batch size.
    pub mean_batch: f64,
}

/// `servers` workers take requests from one FIFO queue, one at a time; requests arrive as a
/// Poisson process of `rate_per_s`; each needs a time drawn from `service`.
pub fn simulate(
    service: &ServiceTimes,
    servers: usize,
    rate_per_s: f64,
    requests: usize,
    seed: u64,
) -> Option<Simulated> {
    simulate_batched(&BatchedService::unbatched(service.clone()), servers, rate_per_s, requests, seed)
}

/// `servers` workers share one FIFO queue fed by Poisson arrivals of `rate_per_s`; a worker
/// that is free takes every waiting request (up to `max_batch`) as one batch, answers each when
/// its own time is up, and is free again when the batch's longest is. The first
/// `requests / 10` are a warm-up and not counted. None when the queue grows without bound
/// (the backlog at the end exceeds a tenth of the requests) or nothing is asked.
pub fn simulate_batched(
    service: &BatchedService,
    servers: usize,
    rate_per_s: f64,
    requests: usize,
    seed: u64,
) -> Option<Simulated> {
    if servers == 0 || rate_per_s <= 0.0 || requests < 10 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut arrivals = Vec::with_capacity(requests);
    let mut now_s = 0.0f64;
    for _ in 0..requests {
        now_s += -(1.0 - rng.next_f64()).ln() / rate_per_s;
        arrivals.push(now_s);
    }
    let warm_up = requests / 10;
    let mut free_at = vec![0.0f64; servers];
    let mut responses = vec![0.0f64; requests];
    let (mut busy_s, mut wait_sum_s, mut batches, mut batched) = (0.0f64, 0.0f64, 0usize, 0usize);
    let mut next = 0;
    while next < requests {
        let (worker, free_s) =
            free_at.iter().copied().enumerate().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, 0.0));
        let start_s = free_s.max(arrivals[next]);
        let mut end = next + 1;
        while end < requests && end - next < service.max_batch && arrivals[end] <= start_s {
            end += 1;
        }
        let size = end - next;
        let mut longest_s = 0.0f64;
        for index in next..end {
            let needs_s = service.draw(size, rng.next_f64());
            responses[index] = start_s + needs_s - arrivals[index];
            longest_s = longest_s.max(needs_s);
            if index >= warm_up {
                wait_sum_s += start_s - arrivals[index];
            }
        }
        free_at[worker] = start_s + longest_s;
        if next >= warm_up {
            busy_s += longest_s;
            batches += 1;
            batched += end - next;
        }
        next = end;
    }
    // Unstable: the last requests waited as long as a tenth of the whole run's arrivals.
    let last_wait_s = free_at.iter().copied().fold(0.0, f64::max) - now_s;
    if last_wait_s > now_s / 10.0 {
        return None;
    }
    let counted = &mut responses[warm_up..];
    counted.sort_by(f64::total_cmp);
    let n = counted.len();
    let at = |q: f64| counted[((q * n as f64).ceil() as usize).saturating_sub(1).min(n - 1)];
    let span_s = (now_s - arrivals[warm_up]).max(f64::MIN_POSITIVE);
    Some(Simulated {
        p50_s: at(0.50),
        p95_s: at(0.95),
        p99_s: at(0.99),
        mean_wait_s: wait_sum_s / n as f64,
        utilisation: (busy_s / (span_s * servers as f64)).min(1.0),
        mean_batch: batched as f64 / batches.max(1) as f64,
    })
}

/// M/M/c: Poisson arrivals, exponential service with the measured mean, `servers` workers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmC {
    pub servers: usize,
    pub rate_per_s: f64,
    pub mean_service_s: f64,
}

impl MmC {
    /// Offered load per worker (ρ).
    pub fn utilisation(&self) -> f64 {
        self.rate_per_s * self.mean_service_s / self.servers as f64
    }

    /// Erlang C: the probability that a request waits. None when ρ ≥ 1.
    pub fn probability_of_waiting(&self) -> Option<f64> {
        let c = self.servers;
        let load = self.rate_per_s * self.mean_service_s;
        let rho = self.utilisation();
        if c == 0 || !(0.0..1.0).contains(&rho) {
            return None;
        }
        // Σ_{k<c} a^k/k! and a^c/c!, built term by term (no factorials to overflow).
        let (mut sum, mut term) = (0.0, 1.0);
        for k in 0..c {
            sum += term;
            term *= load / (k as f64 + 1.0);
        }
        let top = term / (1.0 - rho);
        Some(top / (sum + top))
    }

    /// P(response time > t): waiting (0 with probability 1 − C, else exponential at rate
    /// cμ − λ) plus an exponential service at rate μ.
    pub fn response_survival(&self, t_s: f64) -> Option<f64> {
        let waits = self.probability_of_waiting()?;
        let mu = 1.0 / self.mean_service_s;
        let theta = self.servers as f64 * mu - self.rate_per_s;
        let both = if (theta - mu).abs() < 1e-12 * mu {
            (1.0 + mu * t_s) * (-mu * t_s).exp()
        } else {
            (theta * (-mu * t_s).exp() - mu * (-theta * t_s).exp()) / (theta - mu)
        };
        Some((1.0 - waits) * (-mu * t_s).exp() + waits * both)
    }

    /// The response time's `q` quantile, by bisection on the survival function.
    pub fn response_quantile(&self, q: f64) -> Option<f64> {
        let target = 1.0 - q;
        let (mut low, mut high) = (0.0, self.mean_service_s);
        while self.response_survival(high)? > target {
            high *= 2.0;
        }
        for _ in 0..100 {
            let middle = (low + high) / 2.0;
            if self.response_survival(middle)? > target {
                low = middle;
            } else {
                high = middle;
            }
        }
        Some((low + high) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn exponential(mean_s: f64) -> ServiceTimes {
        let mut rng = SplitMix64::new(99);
        let samples: Vec<f64> = (0..200_000).map(|_| -(1.0 - rng.next_f64()).ln() * mean_s).collect();
        ServiceTimes::from_samples(&samples).unwrap()
    }

    #[test]
    fn a_histogram_becomes_a_distribution_with_the_right_quantiles_and_mean() {
        // 10 under 10 ms, 30 more under 20 ms, 60 more under 40 ms; none above.
        let times =
            ServiceTimes::from_histogram(&[0.01, 0.02, 0.04, f64::INFINITY], &[10.0, 40.0, 100.0, 100.0]).unwrap();
        assert!((times.quantile(0.1) - 0.01).abs() < 1e-12);
        assert!((times.quantile(0.25) - 0.015).abs() < 1e-12);
        assert!((times.quantile(0.7) - 0.03).abs() < 1e-12);
        assert!((times.quantile(1.0) - 0.04).abs() < 1e-12);
        // Uniform inside buckets: 0.1·5 + 0.3·15 + 0.6·30 ms.
        assert!((times.mean() - 0.023).abs() < 1e-12, "{}", times.mean());
        assert!(ServiceTimes::from_histogram(&[0.01, f64::INFINITY], &[0.0, 0.0]).is_none());
        // Empty buckets below and between: times only where there were observations.
        let gappy =
            ServiceTimes::from_histogram(&[0.008, 0.012, 0.02, 0.04, f64::INFINITY], &[0.0, 50.0, 50.0, 100.0, 100.0])
                .unwrap();
        assert!((gappy.quantile(0.25) - 0.010).abs() < 1e-12, "{}", gappy.quantile(0.25));
        assert!((gappy.quantile(0.75) - 0.030).abs() < 1e-12, "{}", gappy.quantile(0.75));
        assert!((gappy.mean() - 0.02).abs() < 1e-12, "{}", gappy.mean());
        let samples = ServiceTimes::from_samples(&[0.3, 0.1, 0.2]).unwrap();
        assert!((samples.quantile(1.0 / 3.0) - 0.1).abs() < 1e-12 && (samples.quantile(1.0) - 0.3).abs() < 1e-12);
    }

    /// Textbook values: M/M/2 at a = 1 (ρ 0.5) waits with probability 1/3; M/M/1 response time
    /// is exponential at rate μ − λ.
    #[test]
    fn erlang_c_and_the_mm1_response_time_are_textbook() {
        let mm2 = MmC { servers: 2, rate_per_s: 1.0, mean_service_s: 1.0 };
        assert!((mm2.probability_of_waiting().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        let mm1 = MmC { servers: 1, rate_per_s: 8.0, mean_service_s: 0.1 };
        assert!((mm1.probability_of_waiting().unwrap() - 0.8).abs() < 1e-12);
        let p95 = mm1.response_quantile(0.95).unwrap();
        assert!((p95 - 20f64.ln() / 2.0).abs() < 1e-9, "{p95}");
        assert!(MmC { servers: 1, rate_per_s: 10.0, mean_service_s: 0.1 }.probability_of_waiting().is_none());
    }

    #[test]
    fn the_simulation_agrees_with_mmc_for_exponential_service() {
        let service = exponential(0.05);
        for (servers, rate) in [(1, 12.0), (2, 30.0), (4, 60.0)] {
            let simulated = simulate(&service, servers, rate, 300_000, 7).unwrap();
            let model = MmC { servers, rate_per_s: rate, mean_service_s: service.mean() };
            let p95 = model.response_quantile(0.95).unwrap();
            let error = (simulated.p95_s - p95).abs() / p95;
            assert!(error < 0.04, "c={servers} λ={rate}: simulated {} vs M/M/c {p95}", simulated.p95_s);
            assert!((simulated.utilisation - model.utilisation()).abs() < 0.02, "{simulated:?}");
        }
    }

    /// M/D/1 (constant service): Pollaczek-Khinchine mean wait ρ / (2μ(1 − ρ)).
    #[test]
    fn constant_service_waits_as_pollaczek_khinchine_says() {
        let service = ServiceTimes::from_samples(&[0.1]).unwrap();
        let simulated = simulate(&service, 1, 7.0, 300_000, 3).unwrap();
        let (rho, mu) = (0.7, 10.0);
        let expected = rho / (2.0 * mu * (1.0 - rho));
        assert!((simulated.mean_wait_s - expected).abs() / expected < 0.04, "{simulated:?} vs {expected}");
        assert!(simulate(&service, 1, 12.0, 10_000, 1).is_none(), "ρ = 1.2 cannot keep up");
    }
}

#[cfg(test)]
mod batch_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// 10 ms alone, 12 ms each in a batch of two or more: a worker that batches keeps up where
    /// one taking a request at a time cannot.
    #[test]
    fn batching_workers_keep_up_beyond_one_at_a_time() {
        let alone = ServiceTimes::from_samples(&[0.010]).unwrap();
        let together = ServiceTimes::from_samples(&[0.012]).unwrap();
        let batched = BatchedService::new(vec![(1, 1, alone.clone()), (2, usize::MAX, together.clone())], 8).unwrap();
        assert_eq!(batched.for_batch(1), &alone);
        assert_eq!(batched.for_batch(5), &together);
        // Never measured beyond one at a time: no batching assumed.
        let only_alone = BatchedService::new(vec![(1, 1, alone.clone())], 8).unwrap();
        assert_eq!(only_alone.max_batch, 1);
        assert!(simulate_batched(&only_alone, 1, 150.0, 20_000, 5).is_none(), "no gain assumed");
        assert!(simulate_batched(&only_alone, 1, 80.0, 20_000, 5).is_some());
        // One worker: at most 100/s one at a time; 150/s only by batching.
        assert!(simulate(&alone, 1, 150.0, 20_000, 5).is_none());
        let simulated = simulate_batched(&batched, 1, 150.0, 20_000, 5).unwrap();
        assert!(simulated.mean_batch > 1.5, "{simulated:?}");
        assert!(simulated.p95_s < 0.1, "{simulated:?}");
        // At a trickle the batches are single and the response is the time alone.
        let light = simulate_batched(&batched, 1, 1.0, 2_000, 5).unwrap();
        assert!(light.mean_batch < 1.05 && (light.p50_s - 0.010).abs() < 1e-9, "{light:?}");
    }
}
