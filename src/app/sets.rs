//! The forget and retain sets as the data panel shows them: their sources, the loaded
//! images (for counts and thumbnails) and every rejected file with its reason.

use std::path::{Path, PathBuf};

use crate::data::{ImageSet, ImageSpec, Rejected, load_paths};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Forget,
    Retain,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Forget => "Forget",
            Self::Retain => "Retain",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SetView {
    pub role: Role,
    /// Files and folders the set is made of (what the config records).
    pub sources: Vec<PathBuf>,
    pub images: Option<ImageSet>,
    /// Files that were not used, and why (from the last load and the last drop).
    pub rejected: Vec<Rejected>,
    /// Bumped on every change, so thumbnails are re-uploaded only then.
    pub version: u64,
}

impl SetView {
    /// The class labels present in the loaded set, ascending (unlabelled images aside).
    pub fn classes(&self) -> Vec<usize> {
        self.images
            .as_ref()
            .map(|s| s.label_counts().keys().filter_map(|k| *k).collect())
            .unwrap_or_default()
    }

    pub fn new(role: Role) -> Self {
        Self {
            role,
            sources: Vec::new(),
            images: None,
            rejected: Vec::new(),
            version: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.images.as_ref().map_or(0, ImageSet::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the sources and loads them.
    pub fn set_sources(&mut self, sources: Vec<PathBuf>, spec: ImageSpec) {
        self.sources = sources;
        self.rejected.clear();
        self.reload(spec);
    }

    /// Adds dropped or picked paths: each is tried on its own, so one bad file is listed
    /// with its reason and the good ones still join the set. Returns how many were added.
    pub fn add_paths(&mut self, paths: &[PathBuf], spec: ImageSpec) -> usize {
        self.rejected.clear();
        let mut added = 0;
        for path in paths {
            if self.sources.contains(path) {
                continue;
            }
            match load_paths(std::slice::from_ref(path), spec) {
                Ok(_) => {
                    self.sources.push(path.clone());
                    added += 1;
                }
                Err(e) => self.rejected.push(Rejected {
                    path: path.clone(),
                    reason: reason_without_path(&e.to_string(), path),
                }),
            }
        }
        let dropped_rejections = std::mem::take(&mut self.rejected);
        self.reload(spec);
        self.rejected.splice(0..0, dropped_rejections);
        added
    }

    pub fn remove_source(&mut self, index: usize, spec: ImageSpec) {
        if index < self.sources.len() {
            self.sources.remove(index);
            self.rejected.clear();
            self.reload(spec);
        }
    }

    pub fn clear(&mut self) {
        self.sources.clear();
        self.images = None;
        self.rejected.clear();
        self.version += 1;
    }

    /// Loads every source (for another model's image size, too).
    pub fn reload(&mut self, spec: ImageSpec) {
        self.version += 1;
        if self.sources.is_empty() {
            self.images = None;
            return;
        }
        match load_paths(&self.sources, spec) {
            Ok(set) => {
                self.rejected.extend(set.rejected.iter().cloned());
                self.images = Some(set);
            }
            Err(e) => {
                self.images = None;
                self.rejected.push(Rejected {
                    path: self.sources.first().cloned().unwrap_or_default(),
                    reason: e.to_string(),
                });
            }
        }
    }
}

/// `DataError` messages start with the path; the panel lists the path separately.
fn reason_without_path(message: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    message.strip_prefix(&prefix).unwrap_or(message).to_string()
}

/// Writes image `index` of `set` as a PNG under `dir` (named by its pixel hash, atomically),
/// so an image picked from a thumbnail grid can join the forget set as a file. The engine
/// drops retain images with the same pixels, so it leaves the retain set too.
pub fn export_image(set: &ImageSet, index: usize, dir: &Path) -> Result<PathBuf, String> {
    let pixels = set.image(index);
    let hash = crate::util::sha256_hex(pixels);
    let path = dir.join(format!("picked-{}.png", &hash[..12]));
    if path.exists() {
        return Ok(path);
    }
    let spec = set.spec;
    let floats: Vec<f32> = pixels.iter().map(|&b| b as f32 / 255.0).collect();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if spec.channels == 1 {
        crate::images::save_gray_png(&floats, [1, spec.height, spec.width], &path)?;
    } else {
        let rgb = crate::images::to_rgb(&floats, [spec.channels, spec.height, spec.width]);
        crate::images::save_png(&rgb, &path)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::demo;

    #[test]
    fn a_bad_drop_is_listed_and_the_good_files_still_join() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("notes.png");
        std::fs::write(&bad, b"not an image").unwrap();
        let mut set = SetView::new(Role::Forget);
        let added = set.add_paths(
            &[demo::asset(demo::MEMORISED_TSHIRT), bad.clone()],
            demo::MNIST_SPEC,
        );
        assert_eq!(added, 1);
        assert_eq!(set.len(), 1);
        assert_eq!(set.rejected.len(), 1, "{:?}", set.rejected);
        assert_eq!(set.rejected[0].path, bad);
        assert!(!set.rejected[0].reason.is_empty());
    }

    #[test]
    fn a_picked_image_round_trips_through_its_png() {
        let mnist = demo::mnist().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = export_image(&mnist, 7, dir.path()).unwrap();
        let back = load_paths(&[path], demo::MNIST_SPEC).unwrap();
        assert_eq!(back.image(0), mnist.image(7));
    }
}
