//! The trade-off plot's geometry. The runs themselves are read by
//! [`crate::experiment::runs`], the same records `lethe runs` lists.

/// Which points are on the Pareto front when both coordinates are to be minimised
/// (forgetting rate, FID): a point is on it when no other point is at least as good in
/// both and strictly better in one.
pub fn pareto_front(points: &[[f64; 2]]) -> Vec<bool> {
    points
        .iter()
        .map(|p| {
            !points
                .iter()
                .any(|q| q[0] <= p[0] && q[1] <= p[1] && (q[0] < p[0] || q[1] < p[1]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_keeps_only_undominated_points() {
        let points = [
            [0.0, 300.0],
            [0.1, 200.0],
            [0.2, 250.0],
            [0.5, 100.0],
            [0.5, 120.0],
        ];
        assert_eq!(pareto_front(&points), vec![true, true, false, true, false]);
        // Ties are both on the front.
        assert_eq!(pareto_front(&[[1.0, 1.0], [1.0, 1.0]]), vec![true, true]);
        assert!(pareto_front(&[]).is_empty());
    }
}
