//! Lethe's Fréchet distance against scipy's (pytorch-fid's `calculate_frechet_distance`,
//! `scipy.linalg.sqrtm` of the covariance product) on the fixtures that
//! `tools/make_fid_golden.py` wrote: well-conditioned, identical and near-singular sets.

use std::path::PathBuf;

use lethe::metrics::feature_files::{read_npy_features, read_npz_stats};
use lethe::metrics::fid::{FeatureStats, frechet_distance};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fid")
        .join(name)
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

fn stats_of(file: &str) -> FeatureStats {
    let features = read_npy_features(&fixture(file)).unwrap();
    FeatureStats::from_rows(&features.values, features.dim).unwrap()
}

fn case_distance(case: &str) -> f64 {
    let a = stats_of(&format!("{case}_a.npy"));
    let b = stats_of(&format!("{case}_b.npy"));
    frechet_distance(&a, &b).unwrap()
}

fn assert_matches_scipy(case: &str) {
    let scipy = expected()[case]["fid"].as_f64().unwrap();
    let lethe = case_distance(case);
    let relative = (lethe - scipy).abs() / scipy.abs();
    assert!(
        relative <= 1e-6,
        "{case}: Lethe {lethe} vs scipy {scipy} (relative {relative:.2e})"
    );
}

#[test]
fn well_conditioned_sets_match_scipy() {
    assert_matches_scipy("wellconditioned");
}

#[test]
fn relu_features_with_many_zeros_match_scipy() {
    assert_matches_scipy("relu_features");
}

#[test]
fn fewer_samples_than_dimensions_match_scipy() {
    // Rank-deficient covariances (20 samples in 32 dimensions).
    assert_matches_scipy("fewer_samples_than_dims");
}

#[test]
fn near_collinear_features_match_scipy() {
    assert_matches_scipy("near_collinear");
}

#[test]
fn identical_sets_are_at_distance_zero() {
    let scipy = expected()["identical"]["fid"].as_f64().unwrap();
    let lethe = case_distance("identical");
    // Both are round-off around 0; the traces involved are ~64.
    assert!(lethe.abs() < 1e-9 && scipy.abs() < 1e-9, "{lethe} {scipy}");
}

#[test]
fn statistics_files_give_the_same_distance_as_their_features() {
    let scipy = expected()["wellconditioned"]["fid"].as_f64().unwrap();
    let a = read_npz_stats(&fixture("stats_a.npz")).unwrap();
    let b = read_npz_stats(&fixture("stats_b.npz")).unwrap();
    assert_eq!(a.dim(), 64);
    let from_stats = frechet_distance(&a, &b).unwrap();
    assert!(
        (from_stats - scipy).abs() / scipy <= 1e-6,
        "{from_stats} vs {scipy}"
    );
    // Mixed: features on one side, statistics on the other.
    let mixed = frechet_distance(&stats_of("wellconditioned_a.npy"), &b).unwrap();
    assert!((mixed - scipy).abs() / scipy <= 1e-6, "{mixed} vs {scipy}");
}

#[test]
fn a_statistics_file_is_not_mistaken_for_features_and_vice_versa() {
    let err = read_npy_features(&fixture("stats_a.npz")).unwrap_err();
    assert!(err.contains("stats_a.npz"), "{err}");
    let err = read_npz_stats(&fixture("wellconditioned_a.npy")).unwrap_err();
    assert!(err.contains("wellconditioned_a.npy"), "{err}");
}
