//! `lethe bench`: milliseconds per training step and per sampling forward on the demo
//! UNet, median of several timed runs after warm-up. Compare with
//! `bench/pytorch_reference.py`, which times the same model in PyTorch.

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::diffusion::unet::{UNet, UNetConfig};

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
    config: &UNetConfig,
    batch: usize,
    warmup: usize,
    runs: usize,
    device: &Device,
) -> Result<BenchRow, String> {
    let device = device.clone().autodiff();
    let mut model = UNet::new(config, 0, &device)?;
    let mut optim = AdamConfig::new().init();
    let (x, t, classes) = inputs(config, batch, &device);
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
    config: &UNetConfig,
    batch: usize,
    warmup: usize,
    runs: usize,
    device: &Device,
) -> Result<BenchRow, String> {
    let model = UNet::new(config, 0, device)?;
    let (x, t, classes) = inputs(config, batch, device);
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
