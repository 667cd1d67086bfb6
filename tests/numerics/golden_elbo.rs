//! Lethe's DDPM ELBO terms against improved-diffusion's (`_vb_terms_bpd`, `_prior_bpd`),
//! transcribed to NumPy in `tools/make_elbo_golden.py`, on fixed images, noises and noise
//! predictions at t = 0 (the discretised decoder, edge bins included), 1, 2, 10, 250, 500, 999,
//! for both fixed variances, with prediction errors small and large (clipping the predicted x₀).

use std::path::PathBuf;

use lethe::diffusion::schedule::{NoiseSchedule, VarianceType};
use lethe::metrics::likelihood::ElboCoefficients;

fn fixture() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/elbo/terms.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The fixture's schedule: its float32 betas, `alphas_cumprod` accumulated in f32.
fn schedule(betas: &[f32], variance: VarianceType) -> NoiseSchedule {
    let mut running = 1f32;
    let alphas_cumprod = betas
        .iter()
        .map(|b| {
            running *= 1.0 - b;
            running
        })
        .collect();
    NoiseSchedule {
        betas: betas.to_vec(),
        alphas_cumprod,
        variance,
        clip_sample: Some(1.0),
    }
}

#[test]
fn elbo_terms_match_improved_diffusion() {
    let fixture = fixture();
    let betas = floats(&fixture["betas"]);
    let small = ElboCoefficients::new(&schedule(&betas, VarianceType::FixedSmall));
    let large = ElboCoefficients::new(&schedule(&betas, VarianceType::FixedLarge));
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 42);
    for case in cases {
        let c = if case["variance"] == "fixed_small" {
            &small
        } else {
            &large
        };
        let t = case["t"].as_u64().unwrap() as usize;
        let (x0, xt, eps) = (
            floats(&case["x0"]),
            floats(&case["xt"]),
            floats(&case["eps"]),
        );
        let expected = case["term_bits"].as_f64().unwrap();
        let got = c.term_bits(t, &x0, &xt, &eps);
        let tolerance = 1e-9 * expected.abs().max(1.0);
        assert!(
            (got - expected).abs() <= tolerance,
            "{} t={t}: Lethe {got} vs improved-diffusion {expected}",
            case["variance"]
        );
        let prior = case["prior_bits"].as_f64().unwrap();
        assert!((c.prior_bits(&x0) - prior).abs() <= 1e-12_f64.max(1e-9 * prior));
    }
}
