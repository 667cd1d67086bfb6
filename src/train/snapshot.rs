//! A trainer's full state on disk — the weights with their parameter ids, the optimizer's
//! moments and the weight EMA — so a run continues exactly where it stopped. Pretraining and
//! unlearning runs write the same files into their `resume/` directory, one directory per
//! save, and each trainer adds its own `state.json` (the step and what else it needs), which
//! names the snapshot it goes with:
//!
//! ```text
//! resume/snapshot-000000120/model.bpk          weights (Burn record, parameter ids kept)
//! resume/snapshot-000000120/optimizer.bpk      the optimizer's moments, keyed by those ids
//! resume/snapshot-000000120/ema.safetensors    the EMA weights (when the trainer keeps one)
//! resume/state.json                            written last, atomically
//! ```
//!
//! A save writes a new snapshot directory beside the current one, then the trainer replaces
//! `state.json` (temp file + rename), and only then are older snapshots removed
//! ([`remove_others`]). So a save cut short at any point — a kill, a full disk — leaves
//! `state.json` naming a complete snapshot of the same step: never new weights with old
//! optimizer moments or an old step count. (States written before snapshots had their own
//! directories name none; their files sit in `resume/` itself, see [`location`].)

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use crate::diffusion::checkpoint::{self, Provenance};
use crate::diffusion::unet::UNet;
use crate::util::{atomic_write, is_partial_write};

const PREFIX: &str = "snapshot-";
const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const EMA: &str = "ema.safetensors";
/// What the single-directory layout kept in `resume/` itself.
const LEGACY_FILES: [&str; 5] = [MODEL, OPTIMIZER, EMA, "model.tmp.bpk", "optimizer.tmp.bpk"];

/// Writes the weights, optimizer moments and EMA of a trainer after `step` steps into a new
/// snapshot directory in `dir`, and returns its name for the trainer's `state.json`.
pub fn save(
    dir: &Path,
    step: usize,
    model: &UNet,
    optim: &ModuleOptimizer,
    ema: Option<&UNet>,
) -> Result<String, String> {
    let name = format!("{PREFIX}{step:09}");
    let target = dir.join(&name);
    // A save of this same step that was cut short: no state names it.
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let model_path = target.join(MODEL);
    model
        .valid()
        .save_file(&model_path)
        .map_err(|e| format!("{}: {e:?}", model_path.display()))?;
    let optim_path = target.join(OPTIMIZER);
    optim
        .save(&optim_path)
        .map_err(|e| format!("{}: {e:?}", optim_path.display()))?;
    if let Some(ema) = ema {
        let bytes = checkpoint::weights_bytes(ema, &Provenance::new("lethe (EMA resume state)"))?;
        let path = target.join(EMA);
        atomic_write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(name)
}

/// The directory holding the snapshot a state names: `dir/<name>`, or `dir` itself for a
/// state written before snapshots had their own directories (it names none).
pub fn location(dir: &Path, name: Option<&str>) -> PathBuf {
    match name {
        Some(name) => dir.join(name),
        None => dir.to_path_buf(),
    }
}

/// Removes every snapshot in `dir` but `keep`, the temporary files of writes cut short
/// (`util::is_partial_write`), and what earlier versions left there (the single-directory
/// layout's files and their temporary names). Call it only after the state naming `keep` is
/// written.
pub fn remove_others(dir: &Path, keep: &str) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        let removed = if name.starts_with(PREFIX) && name != keep {
            std::fs::remove_dir_all(&path)
        } else if LEGACY_FILES.contains(&name.as_ref()) || is_partial_write(&name) {
            std::fs::remove_file(&path)
        } else {
            Ok(())
        };
        removed.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// `model`, `optim` and `ema` (fresh ones of the same shape) with the snapshot in `dir` (see
/// [`location`]).
/// The EMA lives on `inner`, the device without autodiff.
pub fn load(
    dir: &Path,
    model: UNet,
    optim: ModuleOptimizer,
    ema: Option<UNet>,
    inner: &Device,
) -> Result<(UNet, ModuleOptimizer, Option<UNet>), String> {
    let model_path = dir.join(MODEL);
    let model = model
        .try_load_file(&model_path)
        .map_err(|e| format!("{}: {e:?}", model_path.display()))?;
    let optim = optim
        .load(dir.join(OPTIMIZER))
        .map_err(|e| format!("{}: {e:?}", dir.join(OPTIMIZER).display()))?;
    let ema = match ema {
        Some(fresh) => Some(read_weights(&dir.join(EMA), fresh, inner)?),
        None => None,
    };
    Ok((model, optim, ema))
}

/// Weights from a safetensors file into a model of the same configuration.
pub fn read_weights(path: &Path, fresh: UNet, device: &Device) -> Result<UNet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    checkpoint::apply_weights(fresh, &st, path, device).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_others_keeps_the_named_snapshot_and_what_is_not_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        for snapshot in [
            "snapshot-000000004",
            "snapshot-000000005",
            "snapshot-000000006",
        ] {
            std::fs::create_dir(at(snapshot)).unwrap();
            std::fs::write(at(snapshot).join(MODEL), b"w").unwrap();
        }
        // The single-directory layout of earlier versions, a write cut short, and the files
        // a trainer keeps beside its snapshots.
        for file in [
            MODEL,
            "optimizer.tmp.bpk",
            ".tmpAbC123",
            "state.json",
            "original_samples.safetensors",
        ] {
            std::fs::write(at(file), b"x").unwrap();
        }
        remove_others(dir.path(), "snapshot-000000005").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "original_samples.safetensors",
                "snapshot-000000005",
                "state.json"
            ]
        );
        assert!(at("snapshot-000000005").join(MODEL).is_file());
        assert_eq!(location(dir.path(), None), dir.path());
        assert_eq!(
            location(dir.path(), Some("snapshot-000000005")),
            at("snapshot-000000005")
        );
    }
}
