//! `lethe-mnist11`: a small CNN trained by Lethe on the bundled data (10 MNIST digits +
//! Fashion-MNIST T-shirts as class 10). It judges samples (which class, how confident)
//! and its 128-d penultimate layer is the feature space for MNIST-sized FID.

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{ImageSet, ImageSpec};
use crate::diffusion::checkpoint::{self, CheckpointError, Provenance};
use crate::diffusion::layers::{Conv2d, Init, Linear};
use crate::util::atomic_write;

pub const CLASSIFIER_NAME: &str = "lethe-mnist11";
const WEIGHTS: &str = "model.safetensors";
const CONFIG: &str = "config.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    pub name: String,
    pub channels: usize,
    pub size: usize,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    pub feature_dim: usize,
    /// Accuracy on the held-out split when it was trained, for the record.
    #[serde(default)]
    pub held_out_accuracy: Option<f64>,
    #[serde(default)]
    pub held_out_count: Option<usize>,
}

#[derive(Module, Debug)]
pub struct Classifier {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Classifier {
    pub fn new(config: &ClassifierConfig, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed, device);
        let pooled = config.size / 4;
        Self {
            conv1: Conv2d::new(&mut init, config.channels, 32, 3, 1, 1),
            conv2: Conv2d::new(&mut init, 32, 64, 3, 1, 1),
            fc1: Linear::new(&mut init, 64 * pooled * pooled, config.feature_dim),
            fc2: Linear::new(&mut init, config.feature_dim, config.num_classes),
        }
    }

    /// `[B, C, H, W]` in [-1, 1] → (features `[B, 128]`, logits `[B, classes]`).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let pool = |t| max_pool2d(t, MaxPoolOptions::new([2, 2]));
        let h = pool(relu(self.conv1.forward(x)));
        let h = pool(relu(self.conv2.forward(h)));
        let [b, c, hh, ww] = h.dims();
        let features = relu(self.fc1.forward(h.reshape([b, c * hh * ww])));
        let logits = self.fc2.forward(features.clone());
        (features, logits)
    }
}

/// Loaded classifier with its config.
pub struct LoadedClassifier {
    pub model: Classifier,
    pub config: ClassifierConfig,
}

impl LoadedClassifier {
    pub fn load(dir: &Path, device: &Device) -> Result<Self, CheckpointError> {
        let config: ClassifierConfig = checkpoint::read_json(&dir.join(CONFIG))?;
        let path = dir.join(WEIGHTS);
        let bytes = checkpoint::read_bounded(&path)?;
        let tensors =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Format {
                path: path.clone(),
                reason: format!("not a valid safetensors file: {e}"),
            })?;
        let model = checkpoint::apply_weights(
            Classifier::new(&config, 0, device),
            &tensors,
            &path,
            device,
        )?;
        Ok(Self { model, config })
    }

    /// Softmax probabilities per image, `[B][classes]`, computed in batches.
    pub fn probabilities(
        &self,
        images: &[Vec<f32>],
        shape: [usize; 3],
        device: &Device,
    ) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(256) {
            let x = unit_images_tensor(chunk, shape, device);
            let (_, logits) = self.model.forward(x);
            let probs = softmax(logits, 1)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32");
            out.extend(probs.chunks(self.config.num_classes).map(|p| p.to_vec()));
        }
        out
    }
}

/// Whether image `i` of the training data is held out from classifier training (every 10th):
/// the images its held-out accuracy, and any calibration against real data, are measured on.
pub fn is_held_out(i: usize) -> bool {
    i.is_multiple_of(10)
}

/// Images with values in [0, 1] (CHW) → a `[B, C, H, W]` tensor in [-1, 1].
pub fn unit_images_tensor(
    images: &[Vec<f32>],
    [c, h, w]: [usize; 3],
    device: &Device,
) -> Tensor<4> {
    let values: Vec<f32> = images
        .iter()
        .flat_map(|img| img.iter().map(|v| v * 2.0 - 1.0))
        .collect();
    Tensor::from_data(TensorData::new(values, [images.len(), c, h, w]), device)
}

pub struct TrainReport {
    pub held_out_accuracy: f64,
    pub held_out_count: usize,
    pub final_loss: f32,
}

/// Trains on `data` (labels required), holding out every 10th image for the accuracy
/// figure, and writes `out_dir/{config.json, model.safetensors}`.
pub fn train(
    data: &ImageSet,
    class_names: Vec<String>,
    epochs: usize,
    seed: u64,
    device: &Device,
    out_dir: &Path,
) -> Result<TrainReport, String> {
    let ImageSpec {
        channels, height, ..
    } = data.spec;
    let mut config = ClassifierConfig {
        name: CLASSIFIER_NAME.into(),
        channels,
        size: height,
        num_classes: class_names.len(),
        class_names,
        feature_dim: 128,
        held_out_accuracy: None,
        held_out_count: None,
    };
    let train_device = device.clone().autodiff();
    let mut model = Classifier::new(&config, seed, &train_device);
    let mut optim = AdamConfig::new().init();
    let (held_out, training): (Vec<usize>, Vec<usize>) =
        (0..data.len()).partition(|&i| is_held_out(i));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut final_loss = f32::NAN;
    for _epoch in 0..epochs {
        let mut order = training.clone();
        order.shuffle(&mut rng);
        for batch in order.chunks(128) {
            let x = data.batch(batch, &train_device);
            let y = data.batch_labels(batch, 0, &train_device);
            let (_, logits) = model.forward(x);
            let loss = cross_entropy(logits, y);
            final_loss = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
    }
    let model = model.valid();
    let correct: usize = held_out
        .chunks(256)
        .map(|batch| {
            let (_, logits) = model.forward(data.batch(batch, device));
            let predicted = logits
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .expect("i64");
            batch
                .iter()
                .zip(predicted)
                .filter(|(i, p)| data.labels[**i] == Some(*p as usize))
                .count()
        })
        .sum();
    let accuracy = correct as f64 / held_out.len().max(1) as f64;
    config.held_out_accuracy = Some(accuracy);
    config.held_out_count = Some(held_out.len());
    let provenance = Provenance::new("lethe train-classifier")
        .with("lethe_classifier", CLASSIFIER_NAME)
        .with("lethe_epochs", epochs)
        .with("lethe_held_out_accuracy", format!("{accuracy:.4}"));
    let bytes = checkpoint::weights_bytes(&model, &provenance)?;
    atomic_write(&out_dir.join(WEIGHTS), &bytes).map_err(|e| e.to_string())?;
    atomic_write(
        &out_dir.join(CONFIG),
        &serde_json::to_vec_pretty(&config).expect("json"),
    )
    .map_err(|e| e.to_string())?;
    Ok(TrainReport {
        held_out_accuracy: accuracy,
        held_out_count: held_out.len(),
        final_loss,
    })
}

/// Mean cross-entropy of logits `[B, K]` against integer labels `[B]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, k] = logits.dims();
    let log_probs = burn::tensor::activation::log_softmax(logits, 1);
    let one_hot = labels.one_hot(k).float();
    -(log_probs * one_hot).sum() / b as f64
}
