//! Image sets: what researchers have on disk, converted to what a model takes.
//!
//! Every source ends up as an [`ImageSet`] of 8-bit images at one target size and channel
//! count. Files that cannot be used are listed in [`ImageSet::rejected`] with the reason;
//! the good files still load.

pub mod cifar;
pub mod demo;
pub mod files;
pub mod idx;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use burn::tensor::{Device, Int, Tensor, TensorData};

/// What every image is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageSpec {
    pub fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl std::fmt::Display for ImageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.channels == 1 { "gray" } else { "RGB" };
        write!(f, "{}×{} {kind}", self.width, self.height)
    }
}

/// A file (or record) that was not loaded, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("no usable image in {0}; see the rejected files above")]
    Empty(String),
    #[error("loading was cancelled")]
    Cancelled,
}

/// Most bytes of converted images one file may expand to (its count × the target size):
/// a header cannot make Lethe allocate past what a machine holds. 60,000 MNIST images are
/// 47 MB; 50,000 CIFAR-10 images at 256×256 RGB are 9.8 GB.
pub const MAX_CONVERTED_BYTES: u64 = 16 << 30;

/// Refuses a file whose `count` images would convert to more than [`MAX_CONVERTED_BYTES`].
fn check_converted_size(path: &Path, count: usize, spec: ImageSpec) -> Result<(), DataError> {
    let bytes = (count as u64).saturating_mul(spec.numel() as u64);
    if bytes > MAX_CONVERTED_BYTES {
        return Err(unreadable(
            path,
            format!(
                "{count} images at {spec} would take {bytes} bytes, more than the \
                 {MAX_CONVERTED_BYTES}-byte limit for one file"
            ),
        ));
    }
    Ok(())
}

/// How far a load has come, for whoever shows it (the workbench loads on a worker thread),
/// and a request to stop it. Counts are of images (and of files that turn out not to be).
#[derive(Debug, Default)]
pub struct LoadProgress {
    done: AtomicUsize,
    total: AtomicUsize,
    cancelled: AtomicBool,
}

impl LoadProgress {
    /// Images gone through so far, and how many the load knows of yet (it learns of a
    /// folder's files when it lists it, of an IDX file's images from its header).
    pub fn counts(&self) -> (usize, usize) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// Asks the load to stop at its next image; it then returns [`DataError::Cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    fn expect(&self, more: usize) {
        self.total.fetch_add(more, Ordering::Relaxed);
    }

    /// Counts one image as gone through; an error once the load has been cancelled.
    fn step(&self) -> Result<(), DataError> {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.check()
    }

    fn check(&self) -> Result<(), DataError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(DataError::Cancelled);
        }
        Ok(())
    }
}

pub fn unreadable(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Unreadable {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone)]
pub struct ImageSet {
    pub spec: ImageSpec,
    /// `len × spec.numel()` bytes, CHW per image.
    pub pixels: Vec<u8>,
    pub labels: Vec<Option<usize>>,
    /// Names of the labels, index = label, when the source names them.
    pub class_names: Vec<String>,
    /// Where each image came from (`file.png`, `train-images.idx3-ubyte#17`).
    pub sources: Vec<String>,
    pub rejected: Vec<Rejected>,
    /// Conversions applied (resizes, channel changes), each said once with a count.
    pub conversions: BTreeMap<String, usize>,
}

impl ImageSet {
    pub fn empty(spec: ImageSpec) -> Self {
        Self {
            spec,
            pixels: vec![],
            labels: vec![],
            class_names: vec![],
            sources: vec![],
            rejected: vec![],
            conversions: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.spec.numel();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The images at `indices`, with their labels, sources and class names.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut out = Self::empty(self.spec);
        out.class_names = self.class_names.clone();
        for &i in indices {
            out.push(self.image(i), self.labels[i], self.sources[i].clone());
        }
        out
    }

    pub fn push(&mut self, pixels: &[u8], label: Option<usize>, source: String) {
        debug_assert_eq!(pixels.len(), self.spec.numel());
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
        self.sources.push(source);
    }

    pub fn note_conversion(&mut self, what: String) {
        *self.conversions.entry(what).or_default() += 1;
    }

    pub fn reject(&mut self, path: &Path, reason: impl Into<String>) {
        self.rejected.push(Rejected {
            path: path.to_path_buf(),
            reason: reason.into(),
        });
    }

    /// Appends another set of the same spec (labels keep their numbers; class names are
    /// taken from `other` when this set has none).
    pub fn extend(&mut self, other: ImageSet) {
        assert_eq!(self.spec, other.spec, "image sets of one spec");
        self.pixels.extend(other.pixels);
        self.labels.extend(other.labels);
        self.sources.extend(other.sources);
        self.rejected.extend(other.rejected);
        if self.class_names.is_empty() {
            self.class_names = other.class_names;
        }
        for (k, v) in other.conversions {
            *self.conversions.entry(k).or_default() += v;
        }
    }

    /// Count of images per label (`None` = unlabelled).
    pub fn label_counts(&self) -> BTreeMap<Option<usize>, usize> {
        let mut counts = BTreeMap::new();
        for l in &self.labels {
            *counts.entry(*l).or_default() += 1;
        }
        counts
    }

    /// Image `i` as floats in [0, 1] (what samples are compared and classified as).
    pub fn unit_image(&self, i: usize) -> Vec<f32> {
        self.image(i).iter().map(|&p| p as f32 / 255.0).collect()
    }

    /// Images `indices` as a `[B, C, H, W]` tensor scaled to [-1, 1].
    pub fn batch(&self, indices: &[usize], device: &Device) -> Tensor<4> {
        let n = self.spec.numel();
        let mut values = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            values.extend(self.image(i).iter().map(|&p| p as f32 / 127.5 - 1.0));
        }
        let ImageSpec {
            channels,
            height,
            width,
        } = self.spec;
        Tensor::from_data(
            TensorData::new(values, [indices.len(), channels, height, width]),
            device,
        )
    }

    /// Labels of `indices` (unlabelled images get `fallback`).
    pub fn batch_labels(
        &self,
        indices: &[usize],
        fallback: usize,
        device: &Device,
    ) -> Tensor<1, Int> {
        let values: Vec<i64> = indices
            .iter()
            .map(|&i| self.labels[i].unwrap_or(fallback) as i64)
            .collect();
        Tensor::from_data(TensorData::new(values, [indices.len()]), device)
    }
}

/// Loads every path as the app would: folders (flat, or one subfolder per class), MNIST
/// IDX files (raw or gzip), CIFAR-10 binary batches, or single image files.
pub fn load_paths(paths: &[PathBuf], spec: ImageSpec) -> Result<ImageSet, DataError> {
    // Stops at the first unreadable path: the caller fails on it anyway.
    let loaded = load_all(paths, spec, &LoadProgress::default(), true)?;
    for (_, outcome) in loaded.outcomes {
        outcome?;
    }
    if loaded.set.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(DataError::Empty(names.join(", ")));
    }
    Ok(loaded.set)
}

/// What [`load_each`] made of its paths.
#[derive(Debug)]
pub struct EachLoaded {
    /// The images of every path that could be read, in order.
    pub set: ImageSet,
    /// Per path, in order: how many images it gave, or why it could not be read at all.
    pub outcomes: Vec<(PathBuf, Result<usize, DataError>)>,
}

/// Loads every path as [`load_paths`] does, but each on its own: a path that cannot be read
/// at all (a missing folder, an IDX file with a bad header) is reported with its error and
/// the others still load. Reports to `progress` as it goes, and stops with
/// [`DataError::Cancelled`] when asked to.
pub fn load_each(
    paths: &[PathBuf],
    spec: ImageSpec,
    progress: &LoadProgress,
) -> Result<EachLoaded, DataError> {
    load_all(paths, spec, progress, false)
}

/// [`load_each`]; with `stop_at_error`, the paths after the first unreadable one are left.
fn load_all(
    paths: &[PathBuf],
    spec: ImageSpec,
    progress: &LoadProgress,
    stop_at_error: bool,
) -> Result<EachLoaded, DataError> {
    let mut set = ImageSet::empty(spec);
    let mut outcomes = Vec::with_capacity(paths.len());
    let mut class_names: Vec<String> = vec![];
    for path in paths {
        let outcome = match load_one(path, spec, &mut class_names, progress) {
            Ok(part) => {
                let count = part.len();
                set.extend(part);
                Ok(count)
            }
            Err(DataError::Cancelled) => return Err(DataError::Cancelled),
            Err(error) => Err(error),
        };
        let failed = outcome.is_err();
        outcomes.push((path.clone(), outcome));
        if failed && stop_at_error {
            break;
        }
    }
    if !class_names.is_empty() {
        set.class_names = class_names;
    }
    Ok(EachLoaded { set, outcomes })
}

/// The `[height, width]` the images at `path` have as stored (the first image of a folder,
/// an IDX file's header, 32×32 for CIFAR-10 batches): what a network that resizes its input
/// itself (the FID Inception) should be given, rather than a resize of Lethe's own.
pub fn native_size(path: &Path) -> Option<[usize; 2]> {
    if path.is_file() && idx::looks_like_idx(path) {
        let bytes = idx::read_maybe_gzip(path).ok()?;
        let dims = idx::parse_idx(&bytes, path, 3).ok()?;
        return Some([dims[1], dims[2]]);
    }
    if path.is_file() && cifar::looks_like_cifar(path) {
        return Some([32, 32]);
    }
    files::first_image_size(path)
}

fn load_one(
    path: &Path,
    spec: ImageSpec,
    class_names: &mut Vec<String>,
    progress: &LoadProgress,
) -> Result<ImageSet, DataError> {
    progress.check()?;
    let meta = std::fs::metadata(path).map_err(|e| unreadable(path, e.to_string()))?;
    if meta.is_dir() {
        return files::load_folder(path, spec, class_names, progress);
    }
    if idx::looks_like_idx(path) {
        return idx::load_idx_images(path, spec, progress);
    }
    if cifar::looks_like_cifar(path) {
        return cifar::load_cifar_batch(path, spec, progress);
    }
    progress.expect(1);
    let mut set = ImageSet::empty(spec);
    files::load_file_into(path, None, &mut set);
    progress.step()?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_would_convert_to_more_than_the_limit_is_refused_by_name() {
        let mnist = ImageSpec {
            channels: 1,
            height: 28,
            width: 28,
        };
        let path = Path::new("pixels-images-idx3-ubyte");
        assert!(check_converted_size(path, 60_000, mnist).is_ok());
        // One-pixel images, each made 28×28: a 1 GB IDX file would become 784 GB.
        let error = check_converted_size(path, 1 << 30, mnist)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("pixels-images-idx3-ubyte: 1073741824 images at 28×28 gray"),
            "{error}"
        );
    }
}
