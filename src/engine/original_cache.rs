//! The original model's evaluation, cached so that every later run on the same checkpoint
//! with the same evaluation reuses it instead of sampling the original again — on a large
//! model that is half of a short run's evaluation time.
//!
//! An entry is keyed by the SHA-256 of everything the evaluation depends on ([`CacheKey`]):
//! the checkpoint's weights, model and scheduler configs, the evaluation settings, the data it
//! is judged against, the judge networks' weights, the compute precision and the device. It
//! holds the evaluation, the original's fixed-seed samples (the left half of every grid) and
//! what the run decided from them (the guidance weight, the caveat). Entries live in
//! `<cache dir>/original-evaluations/<key>/`; `evaluation.json` is written last, so an entry
//! cut short by a crash is not read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::metrics::evaluation::Evaluation;
use crate::util::{atomic_write, sha256_hex};

const ENTRY: &str = "evaluation.json";

/// Everything the original's evaluation depends on, hashed into the key.
#[derive(Debug, Serialize)]
pub struct CacheKey {
    pub lethe_version: &'static str,
    /// The running program (see [`build_id`]): code that changed without a version bump
    /// must not reuse what other code computed.
    pub build: String,
    pub weights_sha256: String,
    /// The UNet config and the scheduler config, as JSON.
    pub model: serde_json::Value,
    pub scheduler: serde_json::Value,
    /// The resolved `[eval]` settings that change what is computed (not `every`, `at_end`,
    /// `grid`, `checkpoint_every`).
    pub eval: serde_json::Value,
    pub forget_sha256: String,
    pub retain_sha256: String,
    pub forgotten_class: Option<usize>,
    /// The classifier's and the feature network's labels (name and weights hash).
    pub judges: Vec<String>,
    pub precision: String,
    /// Backend and device: a GPU's floats are not the CPU's.
    pub device: String,
}

impl CacheKey {
    pub fn digest(&self) -> String {
        sha256_hex(
            serde_json::to_string(self)
                .expect("a cache key is JSON")
                .as_bytes(),
        )
    }
}

/// The running executable's size and modification time: another build of Lethe (or of a
/// test binary) is another program.
pub fn build_id() -> String {
    let meta = std::env::current_exe().and_then(std::fs::metadata);
    match meta {
        Ok(m) => {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{} bytes, modified {modified}", m.len())
        }
        Err(_) => "unknown".into(),
    }
}

/// What a cached entry holds besides the samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub evaluation: Evaluation,
    /// The guidance weight the forgotten class is sampled with.
    pub guidance: f32,
    /// The guidance check's report, when it ran.
    pub guidance_check: Option<String>,
    /// The run directory that computed it.
    pub computed_by: PathBuf,
}

/// `<cache dir>/original-evaluations/<digest>`, when a cache directory can be named.
pub fn entry_dir(digest: &str) -> Option<PathBuf> {
    crate::metrics::suite::cache_dir().map(|d| d.join("original-evaluations").join(digest))
}

/// The entry in `dir` with its samples, or `None` when there is none or it cannot be read
/// (a broken entry only costs the evaluation it would have saved).
pub fn load(dir: &Path, shape: [usize; 3]) -> Option<(Entry, Vec<Vec<f32>>)> {
    let text = std::fs::read_to_string(dir.join(ENTRY)).ok()?;
    let entry: Entry = serde_json::from_str(&text).ok()?;
    let samples = super::resume::read_samples(dir, shape).ok()?;
    Some((entry, samples))
}

/// Saves an entry: the samples first, `evaluation.json` last.
pub fn store(
    dir: &Path,
    entry: &Entry,
    samples: &[Vec<f32>],
    shape: [usize; 3],
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    super::resume::write_samples(dir, samples, shape)?;
    let path = dir.join(ENTRY);
    let text = serde_json::to_string_pretty(entry).expect("a cache entry is JSON");
    atomic_write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            lethe_version: "0",
            build: build_id(),
            weights_sha256: "abc".into(),
            model: serde_json::json!({"sample_size": 28}),
            scheduler: serde_json::json!({}),
            eval: serde_json::json!({"samples": 64}),
            forget_sha256: "f".into(),
            retain_sha256: "r".into(),
            forgotten_class: None,
            judges: vec!["lethe-mnist11@12345678".into()],
            precision: "f32".into(),
            device: "cpu".into(),
        }
    }

    #[test]
    fn any_input_changes_the_key() {
        let base = key().digest();
        assert_eq!(base, key().digest());
        let mut other = key();
        other.eval = serde_json::json!({"samples": 32});
        assert_ne!(base, other.digest());
        let mut other = key();
        other.device = "wgpu".into();
        assert_ne!(base, other.digest());
    }

    #[test]
    fn an_entry_round_trips_and_a_partial_one_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [1, 2, 2];
        let samples = vec![vec![0.5f32; 4]; 3];
        assert!(load(dir.path(), shape).is_none());
        super::super::resume::write_samples(dir.path(), &samples, shape).unwrap();
        assert!(
            load(dir.path(), shape).is_none(),
            "samples alone are no entry"
        );
        let entry = Entry {
            evaluation: Evaluation {
                samples: 3,
                forget_copy_rate: 0.25,
                ..Default::default()
            },
            guidance: 2.0,
            guidance_check: Some("auto".into()),
            computed_by: PathBuf::from("runs/x"),
        };
        store(dir.path(), &entry, &samples, shape).unwrap();
        let (read, read_samples) = load(dir.path(), shape).unwrap();
        assert_eq!(read.evaluation, entry.evaluation);
        assert_eq!(read.guidance, 2.0);
        assert_eq!(read_samples, samples);
        assert!(
            load(dir.path(), [3, 2, 2]).is_none(),
            "a shape mismatch is a miss"
        );
    }
}
