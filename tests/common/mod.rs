//! Helpers shared by the integration tests.

use lethe::diffusion::unet::UNetConfig;

/// A UNet small enough to train and sample in milliseconds: 8×8, channels 8/16, attention
/// in the second level and the mid block, class-conditional with a null class.
#[allow(dead_code)]
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
    save_fresh(dir, &tiny_config());
}

/// Saves a freshly initialised model of `config` (seed 0) as a diffusers-layout checkpoint.
#[allow(dead_code)]
fn save_fresh(dir: &std::path::Path, config: &UNetConfig) {
    use burn::tensor::Device;
    use lethe::diffusion::checkpoint::{self, Provenance};
    use lethe::diffusion::schedule::SchedulerConfig;
    use lethe::diffusion::unet::UNet;
    let model = UNet::new(config, 0, &Device::flex()).unwrap();
    checkpoint::save(
        dir,
        &model,
        config,
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

/// A class-setting world for the tiny model: a fresh tiny checkpoint, retain images of four
/// classes in folders `0`–`3` (stripes, stripes, ramps, and plain white) and an 8×8 judge
/// trained on them. The untrained model's samples are noise, never plain white: class 3 is
/// a class its original never draws. Returns (checkpoint, retain folder, classifier folder).
#[allow(dead_code)]
pub fn class_world(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use lethe::data::{ImageSpec, load_paths};
    use lethe::metrics::classifier::{TrainRecipe, train};
    let ckpt = dir.join("ckpt");
    tiny_checkpoint(&ckpt);
    let retain = dir.join("retain");
    for i in 0..20u32 {
        let at = |class: &str| retain.join(class).join(format!("{i}.png"));
        write_png(&at("0"), move |x, _| if (x + i) % 4 < 2 { 230 } else { 20 });
        write_png(&at("1"), move |_, y| if (y + i) % 4 < 2 { 230 } else { 20 });
        write_png(&at("2"), move |x, y| ((x * 30 + y * 3 + i * 7) % 255) as u8);
        write_png(&at("3"), move |_, _| 245 + (i % 10) as u8);
    }
    let spec = ImageSpec {
        channels: 1,
        height: 8,
        width: 8,
    };
    let set = load_paths(std::slice::from_ref(&retain), spec).unwrap();
    let classifier = dir.join("judge");
    let names = ["0", "1", "2", "3"].map(String::from).to_vec();
    train(
        &set,
        names,
        4,
        &TrainRecipe::new(30, 0),
        &burn::tensor::Device::flex(),
        &classifier,
    )
    .unwrap();
    (ckpt, retain, classifier)
}

/// A small evaluation for the class world: a few DDIM-4 samples judged by its `classifier`,
/// no ELBO.
#[allow(dead_code)]
pub fn class_world_eval(classifier: std::path::PathBuf) -> lethe::experiment::config::EvalConfig {
    lethe::experiment::config::EvalConfig {
        every: 0,
        samples: Some(8),
        grid: 4,
        sampler: Some(lethe::diffusion::sampler::SamplerKind::Ddim),
        sampler_steps: Some(4),
        classifier,
        elbo_timesteps: 0,
        ..Default::default()
    }
}

/// A `lethe serve --backend cpu --threads 1` on a free loopback port, killed when dropped
/// (a failed assertion leaves no server behind).
#[allow(dead_code)]
pub struct LetheServer {
    pub child: std::process::Child,
    /// `ws://127.0.0.1:PORT`, read from the server's first line.
    pub url: String,
    /// That first line (device, address, access).
    pub banner: String,
}

#[allow(dead_code)]
impl LetheServer {
    pub fn start(lethe: &str, extra: &[&str]) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(lethe)
            .args(["serve", "--port", "0", "--backend", "cpu", "--threads", "1"])
            .args(extra)
            .env(
                "LETHE_CACHE_DIR",
                std::env::temp_dir().join("lethe-test-cache"),
            )
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lethe serve starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let banner = lines
            .next()
            .expect("lethe serve prints its address")
            .unwrap();
        // Keep draining, so a chatty server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = banner
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .unwrap_or_else(|| panic!("no ws:// address in: {banner}"))
            .to_string();
        Self { child, url, banner }
    }

    /// `remote:ws://…`, as `--backend` takes it.
    pub fn backend(&self) -> String {
        format!("remote:{}", self.url)
    }
}

impl Drop for LetheServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A freshly initialised model shaped like the bundled demo's data (28×28 grey, the demo's
/// 12 class embeddings with null class 11) but tiny (channels 8/16, no attention): what
/// `lethe reproduce --preset tiny` runs on.
#[allow(dead_code)]
pub fn tiny_demo_checkpoint(dir: &std::path::Path) {
    save_fresh(
        dir,
        &UNetConfig {
            block_out_channels: vec![8, 16],
            down_block_types: vec!["DownBlock2D".into(), "DownBlock2D".into()],
            up_block_types: vec!["UpBlock2D".into(), "UpBlock2D".into()],
            norm_num_groups: Some(4),
            add_attention: false,
            ..UNetConfig::demo_mnist()
        },
    );
}

/// The largest element-wise difference of two equally long vectors.
#[allow(dead_code)]
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
