//! `lethe reproduce`'s confidence intervals against scipy (tools/make_t_quantiles_golden.py).

use lethe::reproduce::stats::{Interval, t975};

#[test]
fn t_quantiles_and_a_t_interval_match_scipy() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/golden/t_quantiles.json"
    );
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dfs = golden["df"].as_array().unwrap();
    let quantiles = golden["t975"].as_array().unwrap();
    for (df, q) in dfs.iter().zip(quantiles) {
        let (df, q) = (df.as_u64().unwrap() as usize, q.as_f64().unwrap());
        // The table (df ≤ 30) to its 6 decimals; the expansion beyond to 1e-4.
        let tolerance = if df <= 30 { 1e-6 } else { 1e-4 };
        assert!(
            (t975(df) - q).abs() < tolerance,
            "df {df}: {} vs scipy {q}",
            t975(df)
        );
    }
    let case = &golden["interval"];
    let values: Vec<f64> = case["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let i = Interval::of(&values).unwrap();
    for (ours, theirs) in [(i.mean, "mean"), (i.lo, "lo"), (i.hi, "hi")] {
        let theirs = case[theirs].as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-6, "{ours} vs scipy {theirs}");
    }
}
