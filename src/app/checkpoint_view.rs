//! What the checkpoint panel shows: the model's config and provenance, read from
//! `unet/config.json`, `scheduler/scheduler_config.json` and the safetensors header only
//! (the weights are neither read nor built on the GUI thread).

use std::path::{Path, PathBuf};

use crate::data::ImageSpec;
use crate::diffusion::checkpoint::{self, UNET_WEIGHTS};
use crate::diffusion::unet::UNetConfig;

#[derive(Debug, Clone)]
pub struct CheckpointView {
    pub path: PathBuf,
    pub config: UNetConfig,
    pub scheduler: String,
    pub parameters: usize,
    pub tensors: usize,
    /// The safetensors `__metadata__` (Lethe writes its provenance there).
    pub provenance: Vec<(String, String)>,
}

impl CheckpointView {
    pub fn read(dir: &Path) -> Result<Self, String> {
        let (config, scheduler) = checkpoint::load_configs(dir).map_err(|e| e.to_string())?;
        let header = checkpoint::read_header(&dir.join(UNET_WEIGHTS)).map_err(|e| e.to_string())?;
        let tensors = header.tensors();
        let parameters = tensors
            .values()
            .map(|t| t.shape.iter().product::<usize>())
            .sum();
        let provenance = header
            .metadata()
            .as_ref()
            .map(|m| {
                let mut kv: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                kv.sort();
                kv
            })
            .unwrap_or_default();
        Ok(Self {
            path: dir.to_path_buf(),
            scheduler: format!(
                "{} {} β {}…{}, T={}",
                scheduler.class_name,
                scheduler.beta_schedule,
                scheduler.beta_start,
                scheduler.beta_end,
                scheduler.num_train_timesteps
            ),
            parameters,
            tensors: tensors.len(),
            provenance,
            config,
        })
    }

    /// The image size and channels data must be converted to for this model.
    pub fn image_spec(&self) -> ImageSpec {
        ImageSpec {
            channels: self.config.in_channels,
            height: self.config.sample_size,
            width: self.config.sample_size,
        }
    }

    pub fn conditioning(&self) -> String {
        match (self.config.num_class_embeds, self.config.lethe_null_class) {
            (Some(n), Some(null)) => {
                format!("class-conditional: {n} classes, null class {null} (CFG)")
            }
            (Some(n), None) => format!("class-conditional: {n} classes"),
            _ => "unconditional".into(),
        }
    }
}
