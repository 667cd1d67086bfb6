//! Seeded random streams and batches of clean images.

use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::ImageSet;

/// The random stream of step `step` of a seeded run: independent of everything before it,
/// so resumed and uninterrupted runs draw the same numbers.
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(step as u64 + 1);
    rng
}

/// `batch` distinct indices drawn uniformly from `0..n` (all `n` when `batch` ≥ `n`).
pub fn batch_indices(n: usize, batch: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    // `partial_shuffle` returns the randomly chosen elements as its first slice; they are
    // stored at the *end* of the vector, so slicing the front would pick a fixed batch.
    let (chosen, _) = all.partial_shuffle(rng, batch.min(n));
    chosen.to_vec()
}

/// Clean images drawn from a set.
pub struct Clean {
    /// `[b, c, h, w]` in [-1, 1].
    pub x0: Tensor<4>,
    /// The same values on the host (SISS's importance weights are computed here).
    pub host: Vec<f32>,
    pub labels: Vec<Option<usize>>,
}

/// `b` images: distinct when the set is large enough, otherwise with replacement (a
/// forget set of one image fills the batch with copies of it, as SISS's infinite sampler).
pub fn draw(set: &ImageSet, b: usize, rng: &mut ChaCha8Rng, device: &Device) -> Clean {
    let indices: Vec<usize> = if set.len() >= b {
        batch_indices(set.len(), b, rng)
    } else {
        (0..b).map(|_| rng.random_range(0..set.len())).collect()
    };
    let host: Vec<f32> = indices
        .iter()
        .flat_map(|&i| set.image(i).iter().map(|&p| p as f32 / 127.5 - 1.0))
        .collect();
    let s = set.spec;
    Clean {
        x0: Tensor::from_data(
            TensorData::new(host.clone(), [b, s.channels, s.height, s.width]),
            device,
        ),
        host,
        labels: indices.iter().map(|&i| set.labels[i]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_the_data_set() {
        let mut seen = std::collections::HashSet::new();
        for step in 0..50 {
            let idx = batch_indices(1000, 16, &mut step_rng(0, step));
            assert_eq!(idx.len(), 16);
            assert_eq!(
                idx.iter().collect::<std::collections::HashSet<_>>().len(),
                16,
                "distinct"
            );
            seen.extend(idx);
        }
        // 800 draws from 1000 cover ~550 distinct images; a stuck sampler covers ~16.
        assert!(
            seen.len() > 450,
            "only {} distinct images in 50 batches",
            seen.len()
        );
    }
}
