//! Memorisation in pixel space: the SISS criterion for the MNIST T-shirt experiment.
//! A sample "is" the memorised image when the L2 distance between the two, both flattened
//! and scaled to [0, 1], is below 10 (`claserken/SISS: metrics/tshirt.py`).

pub const SISS_L2_THRESHOLD: f32 = 10.0;

/// L2 distance between two images with values in [0, 1].
pub fn l2_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// Which samples are copies of `target` (distance below `threshold`).
pub fn copies_of(samples: &[Vec<f32>], target: &[f32], threshold: f32) -> Vec<bool> {
    samples
        .iter()
        .map(|s| l2_distance(s, target) < threshold)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_euclidean() {
        assert_eq!(l2_distance(&[0.0, 0.0], &[3.0, 4.0]), 5.0);
    }

    #[test]
    fn threshold_separates_near_and_far() {
        let target = vec![0.5; 784];
        let near: Vec<f32> = target.iter().map(|v| v + 0.2).collect(); // distance 5.6
        let far: Vec<f32> = target.iter().map(|v| v - 0.5).collect(); // distance 14
        assert_eq!(
            copies_of(&[near, far], &target, SISS_L2_THRESHOLD),
            vec![true, false]
        );
    }
}
