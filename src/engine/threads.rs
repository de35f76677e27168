//! How many workers and ONNX Runtime threads a model gets when the config does not say.
//!
//! The rule, from the cores and the model's size on disk:
//! - a small model (under [`SMALL_MODEL_BYTES`] of ONNX files, such as the bundled one): one
//!   worker per core with one thread each — its operators are too small to split across
//!   threads, so requests run side by side instead;
//! - a larger model: one worker with one thread per core — the big matrix products split well,
//!   there is one set of activations, and concurrent requests share decoding steps through
//!   batching instead of competing for the cores.
//!
//! Given only one of the two numbers, the other fills the cores: `cores / given`, at least 1.

use std::path::Path;

/// Below this total size of ONNX files a model counts as small.
pub const SMALL_MODEL_BYTES: u64 = 64 * 1024 * 1024;

/// Workers × intra-op threads for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPlan {
    pub workers: usize,
    pub intra_op_threads: usize,
}

/// The plan for a model of `model_bytes` on `cores` cores, honouring what the config set.
pub fn plan(model_bytes: u64, cores: usize, workers: Option<usize>, intra_op_threads: Option<usize>) -> ThreadPlan {
    let cores = cores.max(1);
    let (workers, intra_op_threads) = match (workers, intra_op_threads) {
        (Some(workers), Some(threads)) => (workers, threads),
        (Some(workers), None) => (workers, cores / workers.max(1)),
        (None, Some(threads)) => (cores / threads.max(1), threads),
        (None, None) if model_bytes < SMALL_MODEL_BYTES => (cores, 1),
        (None, None) => (1, cores),
    };
    ThreadPlan { workers: workers.max(1), intra_op_threads: intra_op_threads.max(1) }
}

/// Total size of the given model files (missing files count 0; loading reports them).
pub fn model_bytes<'a>(files: impl IntoIterator<Item = &'a Path>) -> u64 {
    files.into_iter().filter_map(|file| std::fs::metadata(file).ok()).map(|meta| meta.len()).sum()
}

/// The machine's cores as the process may use them (1 when unknown).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn small_models_get_a_worker_per_core_and_large_ones_all_cores_in_one_worker() {
        assert_eq!(plan(4 * MIB, 2, None, None), ThreadPlan { workers: 2, intra_op_threads: 1 });
        assert_eq!(plan(4 * MIB, 16, None, None), ThreadPlan { workers: 16, intra_op_threads: 1 });
        assert_eq!(plan(900 * MIB, 2, None, None), ThreadPlan { workers: 1, intra_op_threads: 2 });
        assert_eq!(plan(900 * MIB, 16, None, None), ThreadPlan { workers: 1, intra_op_threads: 16 });
    }

    #[test]
    fn the_config_wins_and_one_given_number_fills_the_cores() {
        assert_eq!(plan(900 * MIB, 8, Some(3), Some(5)), ThreadPlan { workers: 3, intra_op_threads: 5 });
        assert_eq!(plan(900 * MIB, 8, Some(2), None), ThreadPlan { workers: 2, intra_op_threads: 4 });
        assert_eq!(plan(4 * MIB, 8, None, Some(4)), ThreadPlan { workers: 2, intra_op_threads: 4 });
        assert_eq!(plan(4 * MIB, 2, Some(4), None), ThreadPlan { workers: 4, intra_op_threads: 1 });
        assert_eq!(plan(4 * MIB, 0, None, None), ThreadPlan { workers: 1, intra_op_threads: 1 });
    }
}
