//! Retrain from scratch — the reference an unlearning method is measured against (exact
//! unlearning; docs/methods.md, baselines): fresh weights from `init_seed`, then the plain
//! denoising loss on the retain set, the step of naive deletion ([`super::finetune`]). On the
//! demo's budget it shows how far a few hundred steps from scratch get, not a converged model.

use burn::tensor::Device;

use crate::diffusion::unet::{UNet, UNetConfig};

/// The weights a retrain run starts from: the checkpoint's architecture, freshly initialised.
pub fn fresh_model(config: &UNetConfig, init_seed: u64, device: &Device) -> Result<UNet, String> {
    UNet::new(config, init_seed, device)
}
