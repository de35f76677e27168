//! The two-sample Kolmogorov-Smirnov test, as scipy's `ks_2samp(a, b)` (two-sided, method
//! "auto"): the statistic D is the largest gap between the two empirical distribution
//! functions; its p-value is exact (the share of lattice paths that leave the band |x/m − y/n|
//! < D, by a dynamic programme over the grid) when neither sample has more than 10,000 values,
//! and Kolmogorov's limiting distribution beyond that.

/// Largest sample size with an exact p-value (scipy's `MAX_AUTO_N`).
pub const MAX_EXACT_N: usize = 10_000;

/// D and its two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KsResult {
    pub statistic: f64,
    pub p: f64,
}

/// The test of `a` against `b` (neither empty); None when one is.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Option<KsResult> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let statistic = statistic(&a, &b);
    let (m, n) = (a.len(), b.len());
    let p = if m.max(n) <= MAX_EXACT_N { exact_p(m, n, statistic) } else { asymptotic_p(m, n, statistic) };
    Some(KsResult { statistic, p: p.clamp(0.0, 1.0) })
}

/// sup |F_a − F_b| over the pooled values (ties step both functions together).
fn statistic(a: &[f64], b: &[f64]) -> f64 {
    let (m, n) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut largest: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let value = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= value {
            i += 1;
        }
        while j < b.len() && b[j] <= value {
            j += 1;
        }
        largest = largest.max((i as f64 / m - j as f64 / n).abs());
    }
    largest
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// P(D ≥ d) under the null: the share of monotone lattice paths from (0, 0) to (m, n) that
/// touch |x·n/g − y·m/g| ≥ h, with h = round(d · lcm). A uniform path reaches (x, y) from
/// (x − 1, y) with probability x / (x + y), so the share of paths to (x, y) that have left the
/// band is q(x, y) = 1 outside it, else (x·q(x−1, y) + y·q(x, y−1)) / (x + y) — no binomial
/// coefficients, so nothing overflows (Viehmann 2021 computes 1 − p the same way).
fn exact_p(m: usize, n: usize, d: f64) -> f64 {
    let g = gcd(m, n);
    let (mg, ng) = ((m / g) as u64, (n / g) as u64);
    let lcm = mg * n as u64;
    let h = (d * lcm as f64).round() as u64;
    if h == 0 {
        return 1.0;
    }
    let outside = |x: u64, y: u64| (x * ng).abs_diff(y * mg) >= h;
    // One column of q over y, updated in place for each x. Along an edge (x = 0 or y = 0)
    // there is one path, and the gap only grows along it: q is 1 from the first point outside.
    let mut column: Vec<f64> = (0..=n as u64).map(|y| if outside(0, y) { 1.0 } else { 0.0 }).collect();
    for x in 1..=m as u64 {
        let mut below = if outside(x, 0) || column[0] == 1.0 { 1.0 } else { 0.0 };
        column[0] = below;
        for (y, cell) in column.iter_mut().enumerate().skip(1) {
            // `cell` still holds q(x − 1, y); `below` is q(x, y − 1).
            let value = if outside(x, y as u64) {
                1.0
            } else {
                let (xf, yf) = (x as f64, y as f64);
                (xf * *cell + yf * below) / (xf + yf)
            };
            *cell = value;
            below = value;
        }
    }
    column[n]
}

/// Kolmogorov's limiting distribution at √(mn/(m+n))·d (for samples past [`MAX_EXACT_N`]).
fn asymptotic_p(m: usize, n: usize, d: f64) -> f64 {
    let en = (m * n) as f64 / (m + n) as f64;
    let lambda = en.sqrt() * d;
    if lambda < 0.2 {
        return 1.0;
    }
    let sum: f64 = (1..=100)
        .map(|k: i32| {
            let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
            sign * (-2.0 * f64::from(k * k) * lambda * lambda).exp()
        })
        .sum();
    2.0 * sum
}
