//! The network whose features FID, precision/recall and KID are computed on: the bundled
//! classifier's penultimate layer (MNIST-sized images only) or the FID Inception-v3 with the
//! weights file the user names (any image size; the FID papers quote).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::classifier::LoadedClassifier;
use super::inception::{INCEPTION_DIM, LoadedInception};
use crate::data::ImageSpec;

/// Which feature network to use, as written on the command line and in configs:
/// `classifier` (the evaluation's classifier) or `inception:PATH`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FeatureNetChoice {
    /// The classifier that judges the samples (`[eval] classifier`).
    #[default]
    Classifier,
    /// The FID Inception-v3 with the weights at this path (`.pth` or `.safetensors`).
    Inception(PathBuf),
}

impl FromStr for FeatureNetChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "classifier" => Ok(Self::Classifier),
            Some(("inception", path)) if !path.is_empty() => {
                Ok(Self::Inception(PathBuf::from(path)))
            }
            _ => Err(format!(
                "feature network `{text}`: expected `classifier` or `inception:PATH` (PATH: \
                 pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or the same tensors as \
                 .safetensors)"
            )),
        }
    }
}

impl fmt::Display for FeatureNetChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Classifier => write!(f, "classifier"),
            Self::Inception(path) => write!(f, "inception:{}", path.display()),
        }
    }
}

impl Serialize for FeatureNetChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FeatureNetChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A loaded feature network.
#[derive(Clone)]
pub enum FeatureNet {
    Classifier(Box<LoadedClassifier>),
    Inception(std::sync::Arc<LoadedInception>),
}

impl FeatureNet {
    /// Loads the Inception weights the choice names; `classifier` (no file of its own) is
    /// `None`: the caller's classifier serves.
    pub fn load_inception(
        choice: &FeatureNetChoice,
        device: &Device,
    ) -> Result<Option<Self>, String> {
        match choice {
            FeatureNetChoice::Classifier => Ok(None),
            FeatureNetChoice::Inception(path) => Ok(Some(Self::Inception(std::sync::Arc::new(
                LoadedInception::load(path, device)?,
            )))),
        }
    }

    /// The choice resolved against a classifier: Inception when named, else the classifier
    /// (when there is one).
    pub fn resolve(
        choice: &FeatureNetChoice,
        classifier: Option<&LoadedClassifier>,
        device: &Device,
    ) -> Result<Option<Self>, String> {
        match Self::load_inception(choice, device)? {
            Some(net) => Ok(Some(net)),
            None => Ok(classifier.map(|k| Self::Classifier(Box::new(k.clone())))),
        }
    }

    /// Feature vector length.
    pub fn dim(&self) -> usize {
        match self {
            Self::Classifier(k) => k.config.feature_dim,
            Self::Inception(_) => INCEPTION_DIM,
        }
    }

    /// Features (`[N × dim]`, row after row) of images in [0, 1] (CHW, `shape`).
    pub fn features(
        &self,
        images: &[Vec<f32>],
        shape: [usize; 3],
        device: &Device,
    ) -> Result<Vec<f32>, String> {
        match self {
            Self::Classifier(k) => Ok(k.features(images, shape, device)),
            Self::Inception(net) => net.network.features(images, shape, device),
        }
    }

    /// Provenance name, e.g. `lethe-mnist11@1a2b3c4d` or `inception-v3-fid@6726825d`.
    pub fn label(&self) -> String {
        match self {
            Self::Classifier(k) => k.feature_label(),
            Self::Inception(net) => net.feature_label(),
        }
    }

    pub fn weights_sha256(&self) -> &str {
        match self {
            Self::Classifier(k) => &k.weights_sha256,
            Self::Inception(net) => &net.weights_sha256,
        }
    }

    /// How images read from `path` are given to this network: the classifier's own input
    /// size; for Inception, three channels at the size the images are stored (it resizes to
    /// 299×299 itself, bilinearly, as pytorch-fid does — a resize of Lethe's own first would
    /// change the features).
    pub fn input_spec(&self, path: &Path) -> Result<ImageSpec, String> {
        match self {
            Self::Classifier(k) => Ok(ImageSpec {
                channels: k.config.channels,
                height: k.config.size,
                width: k.config.size,
            }),
            Self::Inception(_) => {
                let [height, width] = crate::data::native_size(path).ok_or_else(|| {
                    format!("{}: no image found to take the size from", path.display())
                })?;
                Ok(ImageSpec {
                    channels: 3,
                    height,
                    width,
                })
            }
        }
    }

    /// Whether this network can featurise images of `shape` (`[c, h, w]`).
    pub fn accepts(&self, [c, h, w]: [usize; 3]) -> bool {
        match self {
            Self::Classifier(k) => {
                k.config.channels == c && k.config.size == h && k.config.size == w
            }
            Self::Inception(_) => c == 1 || c == 3,
        }
    }
}
