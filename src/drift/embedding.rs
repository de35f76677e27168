//! The pooled encoder embedding, as drift keeps it: reduced to [`DIMENSIONS`] numbers by a
//! fixed Gaussian random projection (Johnson-Lindenstrauss: distances between images survive,
//! so the MMD test on the projections sees what it would on the full vectors; Alibi Detect's
//! suggested preprocessing, an untrained autoencoder to 32 dimensions, is a random map too).
//! The projection depends only on the embedding's length and a fixed seed, so every process
//! (and every reference file) projects the same way. Pure apart from a cache of matrices.

use std::sync::{Arc, Mutex};

use crate::stats::bootstrap::SplitMix64;

/// Numbers kept per image.
pub const DIMENSIONS: usize = 32;
/// The projection's seed: changing it makes older reference files incomparable.
const SEED: u64 = 0x0014_d21f_7e3b_ed00;

/// Projection matrices by input length (`hidden × DIMENSIONS`, row-major).
static MATRICES: Mutex<Vec<(usize, Arc<Vec<f32>>)>> = Mutex::new(Vec::new());

fn matrix(hidden: usize) -> Arc<Vec<f32>> {
    let mut matrices = MATRICES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, matrix)) = matrices.iter().find(|(length, _)| *length == hidden) {
        return Arc::clone(matrix);
    }
    let mut rng = SplitMix64::new(SEED ^ hidden as u64);
    let scale = 1.0 / (DIMENSIONS as f64).sqrt();
    let matrix = Arc::new((0..hidden * DIMENSIONS).map(|_| (rng.next_normal() * scale) as f32).collect::<Vec<_>>());
    matrices.push((hidden, Arc::clone(&matrix)));
    matrix
}

/// `pooled` (any length) projected to [`DIMENSIONS`] numbers.
pub fn project(pooled: &[f32]) -> Vec<f32> {
    let matrix = matrix(pooled.len());
    let mut projected = vec![0.0f32; DIMENSIONS];
    for (value, row) in pooled.iter().zip(matrix.chunks_exact(DIMENSIONS)) {
        projected.iter_mut().zip(row).for_each(|(out, weight)| *out += value * weight);
    }
    projected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn the_projection_is_fixed_and_keeps_distances_roughly() {
        let mut rng = SplitMix64::new(3);
        let vectors: Vec<Vec<f32>> = (0..20).map(|_| (0..768).map(|_| rng.next_normal() as f32).collect()).collect();
        assert_eq!(project(&vectors[0]), project(&vectors[0]));
        assert_eq!(project(&vectors[0]).len(), DIMENSIONS);
        // Distance ratios after/before stay near 1 (JL with 32 dimensions: within about ±50 %).
        let mut ratios = Vec::new();
        for (i, a) in vectors.iter().enumerate() {
            for b in &vectors[i + 1..] {
                ratios.push(distance(&project(a), &project(b)) / distance(a, b));
            }
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        assert!((0.85..1.15).contains(&mean), "mean ratio {mean}");
        assert!(ratios.iter().all(|r| (0.4..1.6).contains(r)), "{ratios:?}");
    }
}
