//! Maximum mean discrepancy between two sets of vectors (pooled encoder embeddings), with a
//! permutation test, as Alibi Detect's `MMDDrift`: the unbiased MMD² estimate under a Gaussian
//! RBF kernel whose bandwidth comes from the median heuristic on the cross distances, and a
//! p-value = share of random relabellings whose MMD² is at least the observed one.
//! Seeded (SplitMix64): the same data give the same p-value.

use crate::stats::bootstrap::SplitMix64;

/// MMD² and its permutation p-value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MmdResult {
    pub mmd2: f64,
    pub p: f64,
    /// The kernel bandwidth σ used (k = exp(−‖x − y‖² / (2σ²))).
    pub sigma: f64,
}

fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum()
}

/// σ from the median heuristic: σ² = median of the squared distances between the sets / 2
/// (the `n·m / 2`-th smallest, as Alibi Detect indexes it).
pub fn median_sigma(x: &[Vec<f32>], y: &[Vec<f32>]) -> f64 {
    let mut distances: Vec<f64> = x.iter().flat_map(|a| y.iter().map(move |b| squared_distance(a, b))).collect();
    if distances.is_empty() {
        return 1.0;
    }
    distances.sort_by(f64::total_cmp);
    let median = distances[(distances.len() / 2).min(distances.len() - 1)];
    if median > 0.0 { (0.5 * median).sqrt() } else { 1.0 }
}

/// Unbiased MMD² of the rows of `kernel` (the pooled Gram matrix) in the first `n` places of
/// `order` against the rest: each pair of places once (the matrix is symmetric).
fn mmd2(kernel: &[Vec<f64>], order: &[usize], n: usize) -> f64 {
    let m = order.len() - n;
    let mut in_x = vec![false; order.len()];
    order[..n].iter().for_each(|&row| in_x[row] = true);
    let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
    for (a, row) in kernel.iter().enumerate() {
        for (b, &k) in row.iter().enumerate().skip(a + 1) {
            match (in_x[a], in_x[b]) {
                (true, true) => xx += k,
                (false, false) => yy += k,
                _ => xy += k,
            }
        }
    }
    let (nf, mf) = (n as f64, m as f64);
    2.0 * xx / (nf * (nf - 1.0)) + 2.0 * yy / (mf * (mf - 1.0)) - 2.0 * xy / (nf * mf)
}

/// The test of `x` (reference) against `y` (live) with `permutations` relabellings; None when
/// either set has fewer than two vectors.
pub fn mmd_test(x: &[Vec<f32>], y: &[Vec<f32>], permutations: usize, seed: u64) -> Option<MmdResult> {
    if x.len() < 2 || y.len() < 2 {
        return None;
    }
    let sigma = median_sigma(x, y);
    let pooled: Vec<&Vec<f32>> = x.iter().chain(y).collect();
    let gamma = 1.0 / (2.0 * sigma * sigma);
    let kernel: Vec<Vec<f64>> =
        pooled.iter().map(|a| pooled.iter().map(|b| (-gamma * squared_distance(a, b)).exp()).collect()).collect();
    let mut order: Vec<usize> = (0..pooled.len()).collect();
    let observed = mmd2(&kernel, &order, x.len());
    let mut rng = SplitMix64::new(seed);
    let mut as_large = 0usize;
    for _ in 0..permutations {
        // Fisher-Yates with the seeded generator.
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        if mmd2(&kernel, &order, x.len()) >= observed {
            as_large += 1;
        }
    }
    let p = if permutations == 0 { 1.0 } else { as_large as f64 / permutations as f64 };
    Some(MmdResult { mmd2: observed, p, sigma })
}
