//! What a run saves so that a killed process loses at most the steps since the last save:
//! the trainer's snapshot (`train::snapshot`: weights, optimizer moments, EMA) plus
//! `state.json` ([`RunState`]: the step and what the run decided at its start), and the
//! original model's fixed-seed samples (the left half of every before/after grid), so a
//! resumed run does not sample the original again. Everything random in step `k` is derived
//! from `(train.seed, k)`, so a resumed run takes the same steps an uninterrupted one takes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::util::{atomic_write, sha256_hex};

const STATE: &str = "state.json";
const ORIGINAL_SAMPLES: &str = "original_samples.safetensors";

/// `resume/state.json`, written after the snapshot it describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Steps completed when the state was saved.
    pub step: usize,
    /// Training time until then.
    pub train_seconds: f64,
    /// The guidance weight the run samples the forgotten class with (the guidance check's
    /// choice is made once, at the start).
    pub guidance: f32,
    /// The method's own state (`Method::saved_state`).
    pub method: serde_json::Value,
    /// SHA-256 of `config.toml` when the state was saved: a resumed run must run the same
    /// experiment.
    pub config_sha256: String,
    /// The snapshot directory in `resume/` that holds the weights of this step
    /// (`train::snapshot`; none before the first step, and in states of earlier versions).
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// SHA-256 of the run's `config.toml`.
pub fn config_sha256(run_dir: &Path) -> Result<String, String> {
    let path = run_dir.join("config.toml");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(sha256_hex(&bytes))
}

pub fn write_state(dir: &Path, state: &RunState) -> Result<(), String> {
    let path = dir.join(STATE);
    let text = serde_json::to_string_pretty(state).expect("a run state is JSON");
    atomic_write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// The saved state, or `None` when the run saved none yet.
pub fn read_state(dir: &Path) -> Result<Option<RunState>, String> {
    let path = dir.join(STATE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes samples (each `shape`, values in [0, 1]) as one `[n, c, h, w]` f32 tensor.
pub fn write_samples(dir: &Path, samples: &[Vec<f32>], shape: [usize; 3]) -> Result<(), String> {
    let path = dir.join(ORIGINAL_SAMPLES);
    let bytes: Vec<u8> = samples
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![samples.len(), shape[0], shape[1], shape[2]],
        &bytes,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let file = safetensors::serialize([("samples", view)], None)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    atomic_write(&path, &file).map_err(|e| format!("{}: {e}", path.display()))
}

/// The samples [`write_samples`] wrote, checked against `shape`.
pub fn read_samples(dir: &Path, shape: [usize; 3]) -> Result<Vec<Vec<f32>>, String> {
    let path = dir.join(ORIGINAL_SAMPLES);
    let bad = |why: String| format!("{}: {why}", path.display());
    let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let tensor = file.tensor("samples").map_err(|e| bad(e.to_string()))?;
    let dims = tensor.shape();
    if tensor.dtype() != safetensors::Dtype::F32 || dims.len() != 4 || dims[1..] != shape[..] {
        return Err(bad(format!(
            "holds {:?} {:?}, not f32 samples of shape {shape:?}",
            tensor.dtype(),
            dims
        )));
    }
    let per_sample: usize = shape.iter().product();
    let values: Vec<f32> = tensor
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(values
        .chunks_exact(per_sample)
        .map(<[f32]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let samples = vec![vec![0.25f32; 12], vec![0.75f32; 12]];
        write_samples(dir.path(), &samples, [3, 2, 2]).unwrap();
        assert_eq!(read_samples(dir.path(), [3, 2, 2]).unwrap(), samples);
        let err = read_samples(dir.path(), [1, 2, 2]).unwrap_err();
        assert!(err.contains("original_samples.safetensors"), "{err}");

        assert_eq!(read_state(dir.path()).unwrap(), None);
        let state = RunState {
            step: 7,
            train_seconds: 1.5,
            guidance: 2.0,
            method: serde_json::json!({ "f_k": 0.5 }),
            config_sha256: "abc".into(),
            snapshot: Some("snapshot-000000007".into()),
        };
        write_state(dir.path(), &state).unwrap();
        assert_eq!(read_state(dir.path()).unwrap(), Some(state));
    }
}
