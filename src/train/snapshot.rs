//! A trainer's full state on disk — the weights with their parameter ids, the optimizer's
//! moments and the weight EMA — so a run continues exactly where it stopped. Pretraining and
//! unlearning runs write the same three files into their `resume/` directory; each trainer
//! adds its own `state.json` (the step and what else it needs), written *last*, so a save
//! cut short leaves the previous consistent state in charge:
//!
//! ```text
//! resume/model.bpk          weights (Burn record, parameter ids kept)
//! resume/optimizer.bpk      the optimizer's moments, keyed by those ids
//! resume/ema.safetensors    the EMA weights (when the trainer keeps one)
//! ```
//!
//! Every file is written to a temporary name and renamed into place.

use std::path::Path;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use crate::diffusion::checkpoint::{self, Provenance};
use crate::diffusion::unet::UNet;
use crate::util::atomic_write;

const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const EMA: &str = "ema.safetensors";

/// Writes the weights, optimizer moments and EMA of a trainer into `dir`.
pub fn save(
    dir: &Path,
    model: &UNet,
    optim: &ModuleOptimizer,
    ema: Option<&UNet>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp_model = dir.join("model.tmp.bpk");
    model
        .valid()
        .save_file(&tmp_model)
        .map_err(|e| format!("{}: {e:?}", tmp_model.display()))?;
    rename(&tmp_model, &dir.join(MODEL))?;
    let tmp_optim = dir.join("optimizer.tmp.bpk");
    optim
        .save(&tmp_optim)
        .map_err(|e| format!("{}: {e:?}", tmp_optim.display()))?;
    rename(&tmp_optim, &dir.join(OPTIMIZER))?;
    if let Some(ema) = ema {
        let bytes = checkpoint::weights_bytes(ema, &Provenance::new("lethe (EMA resume state)"))?;
        let path = dir.join(EMA);
        atomic_write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// `model`, `optim` and `ema` (fresh ones of the same shape) with the state saved in `dir`.
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

fn rename(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::rename(from, to).map_err(|e| format!("{} → {}: {e}", from.display(), to.display()))
}
