//! Helpers shared by the integration tests.

use lethe::diffusion::unet::UNetConfig;

/// A UNet small enough to train and sample in milliseconds: 8×8, channels 8/16, attention
/// in the second level and the mid block, class-conditional with a null class.
pub fn tiny_config() -> UNetConfig {
    UNetConfig {
        sample_size: 8,
        block_out_channels: vec![8, 16],
        down_block_types: vec!["DownBlock2D".into(), "AttnDownBlock2D".into()],
        up_block_types: vec!["AttnUpBlock2D".into(), "UpBlock2D".into()],
        norm_num_groups: Some(4),
        add_attention: true,
        ..UNetConfig::demo_mnist()
    }
}

/// Saves a freshly initialised tiny model as a diffusers-layout checkpoint in `dir`.
#[allow(dead_code)]
pub fn tiny_checkpoint(dir: &std::path::Path) {
    use burn::tensor::Device;
    use lethe::diffusion::checkpoint::{self, Provenance};
    use lethe::diffusion::schedule::SchedulerConfig;
    use lethe::diffusion::unet::UNet;
    let config = tiny_config();
    let model = UNet::new(&config, 0, &Device::flex()).unwrap();
    checkpoint::save(
        dir,
        &model,
        &config,
        &SchedulerConfig::default(),
        &Provenance::new("test fixture").with("lethe_steps", 0),
    )
    .unwrap();
}

/// An 8×8 grey image from a pattern function (0–255).
#[allow(dead_code)]
pub fn write_png(path: &std::path::Path, pattern: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(8, 8, |x, y| image::Luma([pattern(x, y)]))
        .save(path)
        .unwrap();
}
