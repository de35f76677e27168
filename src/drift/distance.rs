//! Distances between a reference sample and a live one, as Evidently computes them for its
//! drift tests: the normed Wasserstein distance of numbers (W1 over the reference's standard
//! deviation), and the Jensen-Shannon distance and the population stability index of binned or
//! categorical distributions (`get_binned_data`: equal-width Sturges bins over both samples
//! when the reference has more than 20 distinct values, else one bin per distinct value;
//! PSI replaces empty bins with a tiny share, JS does not).

/// Evidently's floor for the reference's standard deviation in the normed Wasserstein distance.
const MIN_STD: f64 = 0.001;

/// The first Wasserstein distance of two samples (scipy's `wasserstein_distance`): the area
/// between their empirical distribution functions. None when either is empty.
pub fn wasserstein(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let mut pooled: Vec<f64> = a.iter().chain(&b).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let (m, n) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut area = 0.0;
    for pair in pooled.windows(2) {
        let (here, next) = (pair[0], pair[1]);
        while i < a.len() && a[i] <= here {
            i += 1;
        }
        while j < b.len() && b[j] <= here {
            j += 1;
        }
        area += (i as f64 / m - j as f64 / n).abs() * (next - here);
    }
    Some(area)
}

/// Population standard deviation (numpy's default, ddof = 0).
fn std(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// W1 divided by the reference's standard deviation (at least 0.001): Evidently's
/// `wasserstein` test, drift at ≥ 0.1.
pub fn normed_wasserstein(reference: &[f64], live: &[f64]) -> Option<f64> {
    Some(wasserstein(reference, live)? / std(reference).max(MIN_STD))
}

/// Two samples as shares per bin, bins shared.
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    pub reference: Vec<f64>,
    pub live: Vec<f64>,
}

fn distinct(values: &[f64]) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    sorted.len()
}

/// numpy's `histogram_bin_edges(values, bins="sturges")` for floats: ⌈log2 n⌉ + 1 bins of equal
/// width over [min, max] (a constant sample: one bin over [v − 0.5, v + 0.5]).
pub fn sturges_edges(values: &[f64]) -> Vec<f64> {
    let (mut low, mut high) =
        values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if low == high {
        low -= 0.5;
        high += 0.5;
    }
    let span = high - low;
    let width = span / ((values.len() as f64).log2() + 1.0);
    let bins = ((span / width).ceil() as usize).max(1);
    (0..=bins).map(|k| low + span * k as f64 / bins as f64).collect()
}

/// Counts of `values` in `edges`' bins as numpy's `histogram` counts them: half-open
/// [a, b) except the last, closed.
fn histogram(values: &[f64], edges: &[f64]) -> Vec<f64> {
    let bins = edges.len() - 1;
    let (first, last) = (edges[0], edges[bins]);
    let mut counts = vec![0.0; bins];
    for &v in values {
        if v < first || v > last {
            continue;
        }
        let mut index = (((v - first) * (bins as f64 / (last - first))) as usize).min(bins - 1);
        if v < edges[index] {
            index = index.saturating_sub(1);
        } else if index + 1 < bins && v >= edges[index + 1] {
            index += 1;
        }
        counts[index] += 1.0;
    }
    counts
}

/// Evidently's `get_binned_data` for a numerical feature: Sturges bins over both samples when
/// the reference has more than 20 distinct values, else one bin per distinct value of either.
pub fn bin_numbers(reference: &[f64], live: &[f64]) -> Binned {
    if distinct(reference) > 20 {
        let combined: Vec<f64> = reference.iter().chain(live).copied().collect();
        let edges = sturges_edges(&combined);
        let shares = |values: &[f64]| histogram(values, &edges).into_iter().map(|c| c / values.len() as f64).collect();
        return Binned { reference: shares(reference), live: shares(live) };
    }
    let mut keys: Vec<f64> = reference.iter().chain(live).copied().collect();
    keys.sort_by(f64::total_cmp);
    keys.dedup();
    let shares = |values: &[f64]| {
        keys.iter().map(|k| values.iter().filter(|v| *v == k).count() as f64 / values.len() as f64).collect()
    };
    Binned { reference: shares(reference), live: shares(live) }
}

/// Counts per category (same categories, same order) as shares.
pub fn bin_counts(reference: &[f64], live: &[f64]) -> Binned {
    let shares = |counts: &[f64]| {
        let total: f64 = counts.iter().sum();
        counts.iter().map(|c| if total > 0.0 { c / total } else { 0.0 }).collect()
    };
    Binned { reference: shares(reference), live: shares(live) }
}

/// The Jensen-Shannon distance (natural log; scipy's `jensenshannon`, which rescales both to
/// sum to 1): √((KL(p‖m) + KL(q‖m)) / 2), m = (p + q) / 2. Drift at ≥ 0.1.
pub fn jensen_shannon(binned: &Binned) -> f64 {
    let (p_total, q_total): (f64, f64) = (binned.reference.iter().sum(), binned.live.iter().sum());
    if p_total <= 0.0 || q_total <= 0.0 {
        return 0.0;
    }
    let relative = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    let divergence: f64 = binned
        .reference
        .iter()
        .zip(&binned.live)
        .map(|(p, q)| {
            let (p, q) = (p / p_total, q / q_total);
            let m = (p + q) / 2.0;
            relative(p, m) + relative(q, m)
        })
        .sum();
    (divergence / 2.0).max(0.0).sqrt()
}

/// Evidently's fill for empty bins before PSI: the smallest non-empty share / 10⁶ when that is
/// at most 0.0001, else 0.0001 (no renormalisation).
fn fill_zeroes(shares: &[f64]) -> Vec<f64> {
    let smallest = shares.iter().copied().filter(|s| *s > 0.0).fold(f64::INFINITY, f64::min);
    let fill = if smallest <= 0.0001 { smallest / 1e6 } else { 0.0001 };
    shares.iter().map(|s| if *s == 0.0 { fill } else { *s }).collect()
}

/// The population stability index Σ (r − c) · ln(r / c) after the zero fill. Drift at ≥ 0.1.
pub fn psi(binned: &Binned) -> f64 {
    let reference = fill_zeroes(&binned.reference);
    let live = fill_zeroes(&binned.live);
    reference.iter().zip(&live).map(|(r, c)| (r - c) * (r / c).ln()).sum()
}
