//! `lethe bench`: milliseconds per training step and per sampling forward of a UNet (the
//! demo's, google/ddpm-cifar10-32's architecture, or any checkpoint's), median of several
//! timed runs after warm-up. Compare with `bench/pytorch_reference.py`, which times the same
//! model in PyTorch.

use std::path::PathBuf;
use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::diffusion::precision::Precision;
use crate::diffusion::unet::{UNet, UNetConfig};

pub mod ops;

/// The UNet a benchmark times: an architecture, with a checkpoint's weights or seeded random
/// ones, fed images of `config.sample_size`.
#[derive(Debug, Clone)]
pub struct BenchModel {
    /// What the tables call it.
    pub name: String,
    pub config: UNetConfig,
    /// Where the weights come from; `None`: random (seed 0).
    pub checkpoint: Option<PathBuf>,
}

impl BenchModel {
    pub fn random(name: &str, config: UNetConfig) -> Self {
        Self {
            name: name.into(),
            config,
            checkpoint: None,
        }
    }

    /// The model of a checkpoint directory (diffusers layout: `unet/config.json` and
    /// `unet/diffusion_pytorch_model.safetensors`); only its configs are read here.
    pub fn from_checkpoint(dir: &std::path::Path) -> Result<Self, String> {
        let (config, _) =
            crate::diffusion::checkpoint::load_configs(dir).map_err(|e| e.to_string())?;
        Ok(Self {
            name: dir.display().to_string(),
            config,
            checkpoint: Some(dir.to_path_buf()),
        })
    }

    /// The same model fed `size`×`size` images (the UNet is fully convolutional; its weights
    /// do not depend on the side), refused where the UNet's halvings do not divide it.
    pub fn with_size(mut self, size: usize) -> Result<Self, String> {
        let halvings = self.config.block_out_channels.len() - 1;
        if size == 0 || !size.is_multiple_of(1 << halvings) {
            return Err(format!(
                "--size {size}: this UNet halves the image {halvings} times, so the side must be a positive multiple of {}",
                1 << halvings
            ));
        }
        self.config.sample_size = size;
        Ok(self)
    }

    /// The UNet on `device`, with its weights.
    pub fn build(&self, device: &Device) -> Result<UNet, String> {
        match &self.checkpoint {
            None => UNet::new(&self.config, 0, device),
            Some(dir) => crate::diffusion::checkpoint::load(dir, device)
                .map(|ckpt| ckpt.unet)
                .map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchRow {
    pub what: String,
    pub batch: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub runs: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn inputs(
    config: &UNetConfig,
    batch: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<1>, Option<Tensor<1, Int>>) {
    let s = config.sample_size;
    let n = batch * config.in_channels * s * s;
    // Deterministic, non-trivial inputs; their values do not affect timing.
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x = Tensor::from_data(
        TensorData::new(x, [batch, config.in_channels, s, s]),
        device,
    );
    let t: Vec<f32> = (0..batch).map(|i| ((i * 131) % 1000) as f32).collect();
    let t = Tensor::from_data(TensorData::new(t, [batch]), device);
    let classes = config.num_class_embeds.map(|k| {
        let c: Vec<i64> = (0..batch).map(|i| (i % k) as i64).collect();
        Tensor::from_data(TensorData::new(c, [batch]), device)
    });
    (x, t, classes)
}

/// Forward + backward + Adam update, timed end to end (including the device sync that
/// reading the loss forces).
pub fn training_step(
    bench: &BenchModel,
    precision: Precision,
    batch: usize,
    warmup: usize,
    runs: usize,
    device: &Device,
) -> Result<BenchRow, String> {
    let device = device.clone().autodiff();
    let mut model = bench.build(&device)?.with_precision(precision);
    let mut optim = AdamConfig::new().init();
    let (x, t, classes) = inputs(&bench.config, batch, &device);
    let target = x.zeros_like();
    let times = time_runs(warmup, runs, || {
        let eps = model.forward(x.clone(), t.clone(), classes.clone());
        let loss = (eps - target.clone()).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-4, model.clone(), grads);
        // Force completion: read one parameter value back.
        let _ = model.conv_out.bias.val().into_data();
    });
    Ok(row("training step (fwd+bwd+Adam)", batch, times))
}

/// One UNet forward without gradients, as in sampling.
pub fn sampling_forward(
    bench: &BenchModel,
    precision: Precision,
    batch: usize,
    warmup: usize,
    runs: usize,
    device: &Device,
) -> Result<BenchRow, String> {
    let model = bench.build(device)?.with_precision(precision);
    let (x, t, classes) = inputs(&bench.config, batch, device);
    let times = time_runs(warmup, runs, || {
        let _ = model
            .forward(x.clone(), t.clone(), classes.clone())
            .into_data();
    });
    Ok(row("sampling forward (no grad)", batch, times))
}

/// Milliseconds of each of `runs` calls of `work`, after `warmup` untimed calls.
fn time_runs(warmup: usize, runs: usize, mut work: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        work();
    }
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn row(what: &str, batch: usize, times: Vec<f64>) -> BenchRow {
    let min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
    let runs = times.len();
    BenchRow {
        what: what.into(),
        batch,
        median_ms: median(times),
        min_ms,
        runs,
    }
}

/// FID from cached feature vectors, as an evaluation does it once the reference features are
/// on disk: read the N×D `.npy`, fit mean and covariance, and take the Fréchet distance to
/// the statistics of `other` feature rows.
pub fn fid_from_cached_features(
    cached: &std::path::Path,
    other: &crate::metrics::feature_files::FeatureRows,
    warmup: usize,
    runs: usize,
) -> Result<BenchRow, String> {
    use crate::metrics::feature_files::read_npy_features;
    use crate::metrics::fid::{FeatureStats, frechet_distance};
    let other = FeatureStats::from_rows(&other.values, other.dim)?;
    let count = read_npy_features(cached)?.count();
    let mut failure = None;
    let times = time_runs(warmup, runs, || {
        let result = read_npy_features(cached)
            .and_then(|rows| FeatureStats::from_rows(&rows.values, rows.dim))
            .and_then(|stats| frechet_distance(&stats, &other));
        if let Err(e) = result {
            failure = Some(e);
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(row(
            "FID from cached features (read .npy + stats + distance)",
            count,
            times,
        )),
    }
}

/// One evaluation with a preset on the demo model, as a run does it every k steps (the
/// suite's setup — data, reference features — happens once per run and is not timed):
/// drawing the samples, then every metric.
pub fn preset_evaluation(
    preset: crate::metrics::suite::Preset,
    warmup: usize,
    runs: usize,
    device: &Device,
) -> Result<Vec<BenchRow>, String> {
    use crate::data::demo;
    use crate::diffusion::checkpoint;
    use crate::diffusion::sampler::{SAMPLE_BATCH, SamplerSpec};
    use crate::metrics::classifier::LoadedClassifier;
    use crate::metrics::feature_net::FeatureNet;
    use crate::metrics::suite::{Drawn, Suite, SuiteSpec};
    let ckpt =
        checkpoint::load(&demo::asset(demo::DEMO_CHECKPOINT), device).map_err(|e| e.to_string())?;
    let retain = demo::mnist().map_err(|e| e.to_string())?;
    let forget = demo::memorised_tshirt().map_err(|e| e.to_string())?;
    let shape = ckpt.config.image_shape();
    let classifier =
        LoadedClassifier::load_for(&demo::asset(demo::DEMO_CLASSIFIER), shape, device)?;
    let settings = preset.settings();
    let suite = Suite::for_run(
        SuiteSpec {
            model: &ckpt.config,
            retain: &retain,
            forget: &forget,
            feature_net: Some(FeatureNet::Classifier(Box::new(classifier.clone()))),
            classifier: Some(classifier),
            forgotten_class: Some(demo::TSHIRT_LABEL),
            copy_threshold: crate::metrics::memorization::SISS_L2_THRESHOLD,
            elbo_images: settings.elbo_images,
            elbo_timesteps: settings.elbo_timesteps,
            seed: 0,
            preset: preset.name().into(),
        },
        device,
    )?;
    let spec = SamplerSpec::ddim(settings.sampler_steps);
    let job = ckpt.sample_job(&spec, device);
    let sampler = spec.label();
    let draw = || job.run_batched(0, settings.samples, SAMPLE_BATCH, |_| {});
    let evaluate = |samples: &[Vec<f32>]| {
        suite.evaluate(
            &ckpt.unet,
            &ckpt.schedule,
            &Drawn {
                samples,
                quality: None,
                shape,
                sampler: &sampler,
                seed: 0,
            },
            device,
        )
    };
    let mut failure = None;
    let mut sampling = vec![];
    let mut metrics = vec![];
    let total = time_runs(warmup, runs, || {
        let clock = Instant::now();
        let drawn = draw();
        sampling.push(clock.elapsed().as_secs_f64() * 1e3);
        let clock = Instant::now();
        if let Err(e) = drawn.and_then(|s| evaluate(&s)) {
            failure = Some(e);
        }
        metrics.push(clock.elapsed().as_secs_f64() * 1e3);
    });
    if let Some(e) = failure {
        return Err(e);
    }
    // The warm-up runs are the first entries of the split timings.
    let timed = |v: Vec<f64>| v[warmup..].to_vec();
    let name = preset.name();
    Ok(vec![
        row(
            &format!("{name} evaluation: {} samples, {sampler}", settings.samples),
            settings.samples,
            timed(sampling),
        ),
        row(
            &format!(
                "{name} evaluation: metrics (classifier, FID, P/R, IS from 100 samples, ELBO {}+{} images × {} t)",
                1, settings.elbo_images, settings.elbo_timesteps
            ),
            settings.samples,
            timed(metrics),
        ),
        row(
            &format!("{name} evaluation: total"),
            settings.samples,
            total,
        ),
    ])
}
