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
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{ImageSet, ImageSpec};
use crate::diffusion::checkpoint::{self, CheckpointError, Provenance};
use crate::diffusion::layers::{Conv2d, Init, Linear};
use crate::util::{atomic_write, cosine_decay};

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
    pub conv3: Conv2d,
    pub conv4: Conv2d,
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Classifier {
    pub fn new(config: &ClassifierConfig, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed, device);
        let pooled = config.size / 4;
        Self {
            conv1: Conv2d::new(&mut init, config.channels, 32, 3, 1, 1),
            conv2: Conv2d::new(&mut init, 32, 32, 3, 1, 1),
            conv3: Conv2d::new(&mut init, 32, 64, 3, 1, 1),
            conv4: Conv2d::new(&mut init, 64, 64, 3, 1, 1),
            fc1: Linear::new(&mut init, 64 * pooled * pooled, config.feature_dim),
            fc2: Linear::new(&mut init, config.feature_dim, config.num_classes),
        }
    }

    /// `[B, C, H, W]` in [-1, 1] → (features `[B, 128]`, logits `[B, classes]`).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let pool = |t| max_pool2d(t, MaxPoolOptions::new([2, 2]));
        // Two 3×3 convolutions per resolution (28 → 14 → 7), VGG-style.
        let h = relu(self.conv1.forward(x));
        let h = pool(relu(self.conv2.forward(h)));
        let h = relu(self.conv3.forward(h));
        let h = pool(relu(self.conv4.forward(h)));
        let [b, c, hh, ww] = h.dims();
        let features = relu(self.fc1.forward(h.reshape([b, c * hh * ww])));
        let logits = self.fc2.forward(features.clone());
        (features, logits)
    }
}

/// Loaded classifier with its config (cloning shares its weights).
#[derive(Clone)]
pub struct LoadedClassifier {
    pub model: Classifier,
    pub config: ClassifierConfig,
    /// SHA-256 of its weights file: names the exact feature network in metric provenance.
    pub weights_sha256: String,
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
        Ok(Self {
            model,
            config,
            weights_sha256: crate::util::sha256_hex(&bytes),
        })
    }

    /// Loads the classifier in `dir` if it judges images of `shape` (`[c, h, w]`); the error
    /// names the directory and both shapes.
    pub fn load_for(dir: &Path, shape: [usize; 3], device: &Device) -> Result<Self, String> {
        let k = Self::load(dir, device).map_err(|e| e.to_string())?;
        let [c, h, w] = shape;
        if k.config.channels == c && k.config.size == h && h == w {
            Ok(k)
        } else {
            Err(format!(
                "{}: judges {}×{}×{} images, the model makes {c}×{h}×{w}",
                dir.display(),
                k.config.channels,
                k.config.size,
                k.config.size
            ))
        }
    }

    /// Penultimate-layer features (`[B × feature_dim]`, row after row) and softmax
    /// probabilities (`[B][classes]`) per image, from one forward pass in batches of 256.
    pub fn outputs(
        &self,
        images: &[Vec<f32>],
        shape: [usize; 3],
        device: &Device,
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut features = Vec::with_capacity(images.len() * self.config.feature_dim);
        let mut probs = Vec::with_capacity(images.len());
        for chunk in images.chunks(256) {
            let (f, logits) = self.model.forward(unit_images_tensor(chunk, shape, device));
            features.extend(
                f.into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32 features"),
            );
            let p = softmax_values(logits);
            probs.extend(p.chunks(self.config.num_classes).map(|p| p.to_vec()));
        }
        (features, probs)
    }

    /// Penultimate-layer features per image: the features Lethe's FID is computed on.
    pub fn features(&self, images: &[Vec<f32>], shape: [usize; 3], device: &Device) -> Vec<f32> {
        self.outputs(images, shape, device).0
    }

    /// How its features are named in metric provenance, e.g. `lethe-mnist11@1a2b3c4d`.
    pub fn feature_label(&self) -> String {
        format!("{}@{}", self.config.name, &self.weights_sha256[..8])
    }

    /// Softmax probabilities per image, `[B][classes]`.
    pub fn probabilities(
        &self,
        images: &[Vec<f32>],
        shape: [usize; 3],
        device: &Device,
    ) -> Vec<Vec<f32>> {
        self.outputs(images, shape, device).1
    }
}

/// The demo's confidence bar: a sample "is a digit" when a digit class reaches it.
pub const DIGIT_CONFIDENCE: f32 = 0.9;

/// Whether class probabilities `probs` put at least `confidence` on one of the first
/// `digit_classes` classes (the digits; the T-shirt comes after them).
pub fn is_confident_digit(probs: &[f32], digit_classes: usize, confidence: f32) -> bool {
    probs.iter().take(digit_classes).any(|&q| q >= confidence)
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
    /// Accuracy on every held-out image (digits and T-shirts).
    pub held_out_accuracy: f64,
    pub held_out_count: usize,
    /// Accuracy on the held-out images whose label is below `digit_classes` (MNIST digits).
    pub held_out_digit_accuracy: f64,
    /// Share of held-out digits that are confident digits (`is_confident_digit` at
    /// `DIGIT_CONFIDENCE`): how often the
    /// judge is confident about *real* digits, the ceiling for the demo's sample figure.
    pub held_out_confident_digits: f64,
    pub final_loss: f32,
}

/// How the classifier is trained (recorded in its provenance).
#[derive(Debug, Clone)]
pub struct TrainRecipe {
    pub epochs: usize,
    pub seed: u64,
    pub batch_size: usize,
    /// Peak Adam learning rate; cosine-decayed to 1% of it over all steps.
    pub learning_rate: f64,
    /// Random translation of each training image by up to this many pixels in x and y
    /// (zero fill), so the judge does not depend on exact centring the way MNIST's
    /// centre-of-mass normalisation would teach it — samples are not so centred.
    pub max_shift: usize,
}

impl TrainRecipe {
    pub fn new(epochs: usize, seed: u64) -> Self {
        Self {
            epochs,
            seed,
            batch_size: 128,
            learning_rate: 1e-3,
            max_shift: 2,
        }
    }

    fn learning_rate_at(&self, step: usize, total: usize) -> f64 {
        cosine_decay(self.learning_rate, step as f64 / total.max(1) as f64, 0.01)
    }
}

/// Trains on `data` (labels required), holding out every 10th image for the accuracy
/// figures, and writes `out_dir/{config.json, model.safetensors}`. Classes below
/// `digit_classes` are the digits the held-out digit figures are measured on.
pub fn train(
    data: &ImageSet,
    class_names: Vec<String>,
    digit_classes: usize,
    recipe: &TrainRecipe,
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
    let (held_out, training): (Vec<usize>, Vec<usize>) =
        (0..data.len()).partition(|&i| is_held_out(i));
    let (model, final_loss) = fit(&config, data, &training, recipe, device);
    let mut report = evaluate(&model, data, &held_out, digit_classes, device);
    report.final_loss = final_loss;
    config.held_out_accuracy = Some(report.held_out_accuracy);
    config.held_out_count = Some(report.held_out_count);
    let provenance = Provenance::new("lethe train-classifier")
        .with("lethe_classifier", CLASSIFIER_NAME)
        .with("lethe_epochs", recipe.epochs)
        .with("lethe_seed", recipe.seed)
        .with(
            "lethe_recipe",
            format!(
                "Adam, batch {}, lr {} cosine to 1%, random shift up to {} px",
                recipe.batch_size, recipe.learning_rate, recipe.max_shift
            ),
        )
        .with(
            "lethe_held_out_accuracy",
            format!("{:.4}", report.held_out_accuracy),
        )
        .with(
            "lethe_held_out_digit_accuracy",
            format!("{:.4}", report.held_out_digit_accuracy),
        )
        .with(
            "lethe_held_out_confident_digits",
            format!("{:.4}", report.held_out_confident_digits),
        );
    let bytes = checkpoint::weights_bytes(&model, &provenance)?;
    atomic_write(&out_dir.join(WEIGHTS), &bytes).map_err(|e| e.to_string())?;
    atomic_write(
        &out_dir.join(CONFIG),
        &serde_json::to_vec_pretty(&config).expect("json"),
    )
    .map_err(|e| e.to_string())?;
    Ok(report)
}

/// Adam on shuffled, randomly shifted mini-batches; returns the model and the last batch loss.
fn fit(
    config: &ClassifierConfig,
    data: &ImageSet,
    training: &[usize],
    recipe: &TrainRecipe,
    device: &Device,
) -> (Classifier, f32) {
    let train_device = device.clone().autodiff();
    let mut model = Classifier::new(config, recipe.seed, &train_device);
    let mut optim = AdamConfig::new().init();
    let mut rng = ChaCha8Rng::seed_from_u64(recipe.seed);
    let total_steps = recipe.epochs * training.len().div_ceil(recipe.batch_size);
    let mut step = 0;
    let mut final_loss = f32::NAN;
    for _epoch in 0..recipe.epochs {
        let mut order = training.to_vec();
        order.shuffle(&mut rng);
        for batch in order.chunks(recipe.batch_size) {
            let x = shifted_batch(data, batch, recipe.max_shift, &mut rng, &train_device);
            let y = data.batch_labels(batch, 0, &train_device);
            let (_, logits) = model.forward(x);
            let loss = cross_entropy(logits, y);
            final_loss = loss.clone().into_scalar::<f32>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(recipe.learning_rate_at(step, total_steps), model, grads);
            step += 1;
        }
    }
    (model.valid(), final_loss)
}

/// Images `indices`, each translated by a random offset in `-max_shift..=max_shift` per
/// axis (vacated pixels are background, 0), as a `[B, C, H, W]` tensor in [-1, 1].
fn shifted_batch(
    data: &ImageSet,
    indices: &[usize],
    max_shift: usize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Tensor<4> {
    let ImageSpec {
        channels,
        height,
        width,
    } = data.spec;
    let m = max_shift as i32;
    let images: Vec<Vec<f32>> = indices
        .iter()
        .map(|&i| {
            let dy = rng.random_range(-m..=m) as isize;
            let dx = rng.random_range(-m..=m) as isize;
            shift_image(data.image(i), [channels, height, width], dy, dx)
        })
        .collect();
    unit_images_tensor(&images, [channels, height, width], device)
}

/// One CHW u8 image moved by (`dy`, `dx`) pixels, as values in [0, 1] with zero fill.
pub fn shift_image(image: &[u8], [c, h, w]: [usize; 3], dy: isize, dx: isize) -> Vec<f32> {
    let mut out = vec![0.0; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            let sy = y as isize - dy;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            for x in 0..w {
                let sx = x as isize - dx;
                if sx < 0 || sx >= w as isize {
                    continue;
                }
                let src = (ch * h + sy as usize) * w + sx as usize;
                out[(ch * h + y) * w + x] = image[src] as f32 / 255.0;
            }
        }
    }
    out
}

/// Held-out figures: overall and digit accuracy, and the judge's confidence on real digits.
fn evaluate(
    model: &Classifier,
    data: &ImageSet,
    held_out: &[usize],
    digit_classes: usize,
    device: &Device,
) -> TrainReport {
    let mut correct = 0;
    let mut digits = 0;
    let mut digits_correct = 0;
    let mut digits_confident = 0;
    for batch in held_out.chunks(256) {
        let (_, logits) = model.forward(data.batch(batch, device));
        let probs = softmax_values(logits);
        let k = probs.len() / batch.len();
        for (&i, p) in batch.iter().zip(probs.chunks(k)) {
            let predicted = argmax(p);
            let is_right = data.labels[i] == Some(predicted);
            correct += usize::from(is_right);
            if data.labels[i].is_some_and(|l| l < digit_classes) {
                digits += 1;
                digits_correct += usize::from(is_right);
                digits_confident +=
                    usize::from(is_confident_digit(p, digit_classes, DIGIT_CONFIDENCE));
            }
        }
    }
    let share = |n: usize, of: usize| n as f64 / of.max(1) as f64;
    TrainReport {
        held_out_accuracy: share(correct, held_out.len()),
        held_out_count: held_out.len(),
        held_out_digit_accuracy: share(digits_correct, digits),
        held_out_confident_digits: share(digits_confident, digits),
        final_loss: f32::NAN,
    }
}

/// Row-wise softmax of `[B, K]` logits, flattened on the host.
fn softmax_values(logits: Tensor<2>) -> Vec<f32> {
    softmax(logits, 1)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Mean cross-entropy of logits `[B, K]` against integer labels `[B]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, k] = logits.dims();
    let log_probs = burn::tensor::activation::log_softmax(logits, 1);
    let one_hot = labels.one_hot(k).float();
    -(log_probs * one_hot).sum() / b as f64
}

#[cfg(test)]
mod tests {
    use super::shift_image;

    #[test]
    fn shifting_moves_pixels_and_fills_with_background() {
        // 1×3×3 image with one bright pixel at (row 0, col 0).
        let mut image = vec![0u8; 9];
        image[0] = 255;
        image[4] = 51;
        let moved = shift_image(&image, [1, 3, 3], 1, 2);
        assert_eq!(moved[3 + 2], 1.0, "(0,0) moves to (1,2)");
        assert_eq!(
            moved.iter().filter(|&&v| v > 0.0).count(),
            1,
            "(1,1) leaves the frame"
        );
        let same = shift_image(&image, [1, 3, 3], 0, 0);
        assert_eq!(same[4], 0.2);
    }
}
