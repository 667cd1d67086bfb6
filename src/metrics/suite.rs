//! The whole evaluation of one model, as a run (every k steps) and `lethe eval` compute it:
//! forgetting (copy rate, P(y=c_f), entropy, PUL), quality (FID and precision/recall in the
//! feature network's space — the classifier's or the FID Inception's —, and the
//! Inception-Score-style score with the classifier, against the reference images) and
//! likelihood (ELBO of the forget images and of retain images). Every value carries its
//! provenance.
//!
//! Reference features (the feature network's features of the retain images) are cached on
//! disk per (images, feature network), so only the first evaluation of a data set pays for them.

use std::path::PathBuf;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::classifier::{DIGIT_CONFIDENCE, LoadedClassifier};
use super::evaluation::{Evaluation, MetricProvenance};
use super::feature_files::{FeatureRows, read_npy_features, write_npy_features};
use super::feature_net::FeatureNet;
use super::fid::{FeatureStats, frechet_distance};
use super::forgetting::{ForgetProbe, distinct_unit_images};
use super::inception_score::inception_score;
use super::kid::kernel_inception_distance;
use super::likelihood::{ElboSpec, elbo_bits_per_dim};
use super::precision_recall::precision_recall;
use crate::data::ImageSet;
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::unet::{UNet, UNetConfig};
use crate::util::sha256_hex;

/// At most this many reference images are featurised (the first ones).
pub const REFERENCE_LIMIT: usize = 10_000;
/// Splits of the Inception-Score-style score (as SISS's `inception_score.py`).
pub const IS_SPLITS: usize = 10;
/// Neighbourhood size of precision/recall (as the ADM evaluator).
pub const PR_K: usize = 3;

/// Named evaluation budgets: `fast` for live curves, `thorough` for numbers to report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    #[default]
    Fast,
    Thorough,
}

/// What a preset sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresetSettings {
    pub samples: usize,
    pub sampler_steps: usize,
    /// Forget images and retain images whose ELBO is estimated (each).
    pub elbo_images: usize,
    /// Network evaluations per image for the ELBO (of 1000 timesteps).
    pub elbo_timesteps: usize,
}

impl Preset {
    pub fn settings(self) -> PresetSettings {
        match self {
            // Sized for live curves: ≤ 20 s per evaluation of the demo model on 2 CPU cores
            // (`lethe bench eval`).
            Self::Fast => PresetSettings {
                samples: 48,
                sampler_steps: 20,
                elbo_images: 8,
                elbo_timesteps: 16,
            },
            Self::Thorough => PresetSettings {
                samples: 512,
                sampler_steps: 50,
                elbo_images: 64,
                elbo_timesteps: 100,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Thorough => "thorough",
        }
    }
}

/// The classifier features of the reference images, with their statistics.
pub struct Reference {
    pub rows: FeatureRows,
    pub stats: FeatureStats,
    /// e.g. `9999 retain images`.
    pub description: String,
    pub sha256: String,
}

impl Reference {
    /// `n` feature rows spread evenly over the reference (all of them when `n` ≥ its size).
    pub fn spread_rows(&self, n: usize) -> Vec<f32> {
        let (total, dim) = (self.rows.count(), self.rows.dim);
        let k = n.min(total);
        (0..k)
            .flat_map(|i| {
                let r = i * total / k;
                self.rows.values[r * dim..(r + 1) * dim].iter().copied()
            })
            .collect()
    }

    /// The FID of `n` real reference images (spread evenly) against the whole reference:
    /// what a model whose samples were real images would score at this N. FID is biased
    /// upwards at small N, so a value means little without this floor beside it.
    pub fn fid_floor(&self, n: usize) -> Result<f64, String> {
        let rows = self.spread_rows(n);
        let stats = FeatureStats::from_rows(&rows, self.rows.dim)?;
        frechet_distance(&stats, &self.stats)
    }
}

/// Everything fixed about evaluating models of one run.
pub struct Suite {
    pub probe: ForgetProbe,
    /// The network the quality metrics' features come from.
    pub feature_net: Option<FeatureNet>,
    pub reference: Option<Reference>,
    elbo_forget: Vec<Vec<u8>>,
    elbo_retain: Vec<Vec<u8>>,
    /// The condition the ELBO is computed under (the null class of a conditional model).
    elbo_class: Option<usize>,
    /// How that condition is described, e.g. `p(x | null class 11)`.
    elbo_condition: String,
    elbo: ElboSpec,
    preset: String,
}

/// Samples of the evaluated model, as the caller drew them.
#[derive(Clone, Copy)]
pub struct Drawn<'a> {
    /// Values in [0, 1], judged by the forgetting probe.
    pub samples: &'a [Vec<f32>],
    /// Samples for FID, precision/recall and the score when they differ from `samples` (the
    /// class setting samples the forgotten class for the forgetting rates).
    pub quality: Option<&'a [Vec<f32>]>,
    pub shape: [usize; 3],
    /// e.g. `DDIM-25,uncond`.
    pub sampler: &'a str,
    pub seed: u64,
}

/// What [`Suite::for_run`] assembles a suite from: the evaluated model's shape and classes,
/// the run's data, the judge and the budget. The engine, `lethe eval` and `lethe bench`
/// all build their suite through it, so one rule decides the probe and the ELBO's condition.
pub struct SuiteSpec<'a> {
    /// The evaluated model's config (image shape, class embedding, null class).
    pub model: &'a UNetConfig,
    /// The quality metrics' reference and the retain ELBO images.
    pub retain: &'a ImageSet,
    /// The copy criterion's images and the forget ELBO images.
    pub forget: &'a ImageSet,
    /// Judges samples (class rates, confidence, the Inception-Score-style score); `None`
    /// skips the classifier's metrics.
    pub classifier: Option<LoadedClassifier>,
    /// Gives the features of FID and precision/recall (`FeatureNet::resolve`: the FID
    /// Inception when configured, else the classifier); `None` skips them.
    pub feature_net: Option<FeatureNet>,
    /// The forgotten content's class (the class setting's class, or the forget images'
    /// label), if known.
    pub forgotten_class: Option<usize>,
    /// A sample within this L2 distance (in [0,1] pixels) of a forget image is a copy.
    pub copy_threshold: f32,
    pub elbo_images: usize,
    pub elbo_timesteps: usize,
    pub seed: u64,
    /// `fast`, `thorough`, `custom`, …: how the budget is named in provenance.
    pub preset: String,
}

impl Suite {
    /// The suite of one run (or one `lethe eval`): the forgetting probe from the forget set
    /// and the classifier, the reference features of the retain set, and the ELBO images.
    /// The ELBO conditions on the model's null class, else (a conditional model without one)
    /// on the forgotten class, else on nothing.
    pub fn for_run(spec: SuiteSpec<'_>, device: &Device) -> Result<Self, String> {
        let num_classes = spec.classifier.as_ref().map(|k| k.config.num_classes);
        let probe = ForgetProbe {
            forget_images: distinct_unit_images(spec.forget),
            copy_threshold: spec.copy_threshold,
            // The class rates need the class in the classifier's label space.
            forgotten_class: spec
                .forgotten_class
                .filter(|&c| num_classes.is_some_and(|n| c < n)),
            classifier: spec.classifier,
            confidence: DIGIT_CONFIDENCE,
        };
        let null_class = spec.model.lethe_null_class;
        let elbo_class =
            null_class.or_else(|| spec.model.num_class_embeds.and(spec.forgotten_class));
        let feature_net = spec
            .feature_net
            .filter(|net| net.accepts(spec.model.image_shape()));
        let reference = match &feature_net {
            Some(net) if spec.retain.len() >= 2 => {
                Some(reference_features(net, spec.retain, "retain", device)?)
            }
            _ => None,
        };
        Ok(Self {
            probe,
            feature_net,
            reference,
            elbo_forget: spread(spec.forget, spec.elbo_images),
            elbo_retain: spread(spec.retain, spec.elbo_images),
            elbo_class,
            elbo_condition: match elbo_class {
                None => "p(x)".into(),
                Some(c) if Some(c) == null_class => format!("p(x | null class {c})"),
                Some(c) => format!("p(x | class {c})"),
            },
            elbo: ElboSpec {
                timesteps: spec.elbo_timesteps,
                seed: spec.seed,
            },
            preset: spec.preset,
        })
    }

    /// Forward passes of one evaluation's ELBO estimates (for the cost estimate).
    pub fn elbo_forwards(&self) -> usize {
        if self.elbo.timesteps == 0 {
            return 0;
        }
        (self.elbo_forget.len() + self.elbo_retain.len()) * self.elbo.timesteps
    }

    /// Seconds per sample of judging `samples` — the classifier's outputs, and the feature
    /// network's features when it is another network — timed (for the cost estimate).
    pub fn time_judging(
        &self,
        samples: &[Vec<f32>],
        shape: [usize; 3],
        device: &Device,
    ) -> Result<f64, String> {
        let clock = std::time::Instant::now();
        if let Some(k) = &self.probe.classifier {
            k.outputs(samples, shape, device);
        }
        if let (Some(net @ FeatureNet::Inception(_)), Some(_)) =
            (&self.feature_net, &self.reference)
        {
            net.features(samples, shape, device)?;
        }
        Ok(clock.elapsed().as_secs_f64() / samples.len().max(1) as f64)
    }

    /// Evaluates `model` from samples the caller drew (to show them too).
    pub fn evaluate(
        &self,
        model: &UNet,
        schedule: &NoiseSchedule,
        drawn: &Drawn<'_>,
        device: &Device,
    ) -> Result<Evaluation, String> {
        let Drawn {
            samples,
            quality,
            shape,
            sampler,
            seed,
        } = *drawn;
        let label = format!("{sampler}, seed {seed}");
        let classifier = self.probe.classifier.as_ref();
        let outputs = classifier.map(|k| k.outputs(samples, shape, device));
        let mut eval =
            self.probe
                .evaluate_with(samples, outputs.as_ref().map(|o| o.1.as_slice()), &label);
        let mut how = MetricProvenance {
            preset: self.preset.clone(),
            feature_net: self.feature_net.as_ref().map(FeatureNet::label),
            feature_net_sha256: self
                .feature_net
                .as_ref()
                .map(|net| net.weights_sha256().to_string()),
            samples: samples.len(),
            sampler: sampler.to_string(),
            seed,
            reference: self.reference.as_ref().map(|r| r.description.clone()),
            reference_sha256: self.reference.as_ref().map(|r| r.sha256.clone()),
            elbo: None,
            caveat: None,
            reused_from: None,
        };
        if let (Some(net), Some(reference)) = (&self.feature_net, &self.reference) {
            // The classifier's outputs of the quality images: its probabilities score the
            // Inception-Score-style score, and its features are FID's when it is the net.
            let judged = match (quality, classifier) {
                (Some(q), Some(k)) => Some(k.outputs(q, shape, device)),
                (None, Some(_)) => outputs,
                (_, None) => None,
            };
            let features = match (net, &judged) {
                (FeatureNet::Classifier(_), Some((features, _))) => features.clone(),
                _ => net.features(quality.unwrap_or(samples), shape, device)?,
            };
            let probs = judged.map(|(_, probs)| probs).unwrap_or_default();
            self.quality(&mut eval, &features, &probs, reference)?;
        }
        let elbo_of = |images: &[Vec<u8>]| -> Result<Option<super::likelihood::Elbo>, String> {
            if images.is_empty() {
                return Ok(None);
            }
            let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
            elbo_bits_per_dim(
                model,
                schedule,
                &refs,
                shape,
                self.elbo_class,
                self.elbo,
                device,
            )
            .map(Some)
        };
        if self.elbo.timesteps > 0 {
            let forget = elbo_of(&self.elbo_forget)?;
            let retain = elbo_of(&self.elbo_retain)?;
            // The standard error over images says how far the mean of a few images can be
            // trusted; it was computed for this and would otherwise be dropped.
            let set = |name: &str, e: &Option<super::likelihood::Elbo>| match e {
                Some(e) => format!("{name} N={} (s.e. {:.3})", e.per_image.len(), e.std_error),
                None => format!("{name} N=0"),
            };
            how.elbo = forget.as_ref().or(retain.as_ref()).map(|e| {
                format!(
                    "ELBO bits/dim [{}, {}; {}, {}]",
                    model.precision.tag(e.estimator.clone()),
                    self.elbo_condition,
                    set("forget", &forget),
                    set("retain", &retain)
                )
            });
            eval.elbo_forget_bpd = forget.map(|e| e.bits_per_dim);
            eval.elbo_retain_bpd = retain.map(|e| e.bits_per_dim);
        }
        eval.how = Some(how);
        Ok(eval)
    }

    fn quality(
        &self,
        eval: &mut Evaluation,
        features: &[f32],
        probs: &[Vec<f32>],
        reference: &Reference,
    ) -> Result<(), String> {
        let dim = reference.rows.dim;
        let n = features.len() / dim.max(1);
        if n >= 2 {
            let stats = FeatureStats::from_rows(features, dim)?;
            eval.fid = Some(frechet_distance(&stats, &reference.stats)?);
            eval.fid_real_floor = Some(reference.fid_floor(n)?);
        }
        // Equal set sizes, as Kynkäänniemi et al.: n reference vectors spread evenly over the
        // reference (data sets are often stored sorted by class, the bundled MNIST among them).
        let real = reference.spread_rows(n);
        if n >= 2 && real.len() == features.len() {
            eval.kid = Some(kernel_inception_distance(&real, features, dim)?);
        }
        if n > PR_K && real.len() / dim > PR_K {
            let pr = precision_recall(&real, features, dim, PR_K)?;
            eval.precision = Some(pr.precision);
            eval.recall = Some(pr.recall);
        }
        // At least 10 samples per split, or each split's marginal is a handful of samples
        // and the score means nothing (one sample per split scores exactly 1).
        if probs.len() >= 10 * IS_SPLITS {
            let score = inception_score(probs, IS_SPLITS)?;
            eval.inception_score = Some(score.mean);
            eval.inception_score_std = Some(score.std);
        }
        Ok(())
    }
}

/// Up to `count` images spread evenly over the set (deterministic).
fn spread(set: &ImageSet, count: usize) -> Vec<Vec<u8>> {
    let n = set.len();
    let k = count.min(n);
    (0..k).map(|i| set.image(i * n / k).to_vec()).collect()
}

/// Where Lethe caches derived data: `$LETHE_CACHE_DIR`, else `$XDG_CACHE_HOME/lethe`, else
/// `~/.cache/lethe`; `None` when none can be named.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("LETHE_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("lethe")))
        .or_else(|| env("HOME").map(|p| p.join(".cache/lethe")))
}

/// The feature network's features of the first [`REFERENCE_LIMIT`] images of `set`, read
/// from the cache when this (images, network) pair was featurised before.
pub fn reference_features(
    net: &FeatureNet,
    set: &ImageSet,
    name: &str,
    device: &Device,
) -> Result<Reference, String> {
    let n = set.len().min(REFERENCE_LIMIT);
    let numel = set.spec.numel();
    let pixels = &set.pixels[..n * numel];
    let sha256 = sha256_hex(pixels);
    let cached = cache_dir().map(|d| {
        d.join("reference-features").join(format!(
            "{}-{}-{n}.npy",
            &net.weights_sha256()[..16],
            &sha256[..16]
        ))
    });
    let rows = match cached
        .as_deref()
        .filter(|p| p.exists())
        .map(read_npy_features)
    {
        Some(Ok(rows)) if rows.count() == n && rows.dim == net.dim() => rows,
        // Missing, unreadable or stale: compute again (and replace it).
        _ => {
            let images: Vec<Vec<f32>> = (0..n).map(|i| set.unit_image(i)).collect();
            let spec = set.spec;
            let shape = [spec.channels, spec.height, spec.width];
            let rows = FeatureRows {
                values: net.features(&images, shape, device)?,
                dim: net.dim(),
            };
            if let Some(path) = &cached {
                // A cache that cannot be written only costs time next run.
                let _ = write_npy_features(path, &rows);
            }
            rows
        }
    };
    let stats = FeatureStats::from_rows(&rows.values, rows.dim)?;
    Ok(Reference {
        rows,
        stats,
        description: format!("{n} {name} images"),
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(values: Vec<f32>, dim: usize) -> Reference {
        let stats = FeatureStats::from_rows(&values, dim).unwrap();
        Reference {
            rows: FeatureRows { values, dim },
            stats,
            description: "test".into(),
            sha256: String::new(),
        }
    }

    #[test]
    fn reference_subsets_are_spread_over_a_sorted_set() {
        // Ten rows "sorted by class": rows 0–4 near 0, rows 5–9 near 10.
        let values: Vec<f32> = (0..10)
            .flat_map(|i| {
                let base = if i < 5 { 0.0 } else { 10.0 };
                [base + i as f32 * 0.1, base - i as f32 * 0.2]
            })
            .collect();
        let r = reference(values, 2);
        let picked = r.spread_rows(2);
        assert_eq!(picked, vec![0.0, 0.0, 10.5, 9.0]);
        assert_eq!(r.spread_rows(50).len(), 20);
        // The whole reference against itself is the floor's limit: zero.
        assert!(r.fid_floor(10).unwrap().abs() < 1e-9);
        assert!(r.fid_floor(4).unwrap() > 0.0);
    }
}
