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
