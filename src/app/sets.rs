//! The forget and retain sets as the data panel shows them: their sources, the loaded
//! images (for counts and thumbnails) and every rejected file with its reason. Sets load on
//! a worker thread — the GUI thread never decodes an image — with progress and a cancel.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};

use crate::data::{DataError, EachLoaded, ImageSet, ImageSpec, LoadProgress, Rejected, load_each};

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
    /// The load under way, if any; the set shows its last images until it ends.
    pub loading: Option<SetLoad>,
}

/// A load of a set's sources on a worker thread.
#[derive(Debug, Clone)]
pub struct SetLoad {
    /// The set's sources once the load ends (the new paths among them only if they load).
    sources: Vec<PathBuf>,
    /// Paths being added by a drop or a pick: refused, rather than kept, if unreadable.
    new: Vec<PathBuf>,
    pub progress: Arc<LoadProgress>,
    result: Receiver<LoadResult>,
}

type LoadResult = Result<EachLoaded, DataError>;

/// How a load ended, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadReport {
    Loaded {
        /// Paths asked to join the set (a drop or a pick; 0 for a reload) …
        asked: usize,
        /// … and how many of them did.
        added: usize,
        rejected: usize,
        images: usize,
    },
    Cancelled,
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
            loading: None,
        }
    }

    pub fn len(&self) -> usize {
        self.images.as_ref().map_or(0, ImageSet::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// Replaces the sources and loads them.
    pub fn set_sources(&mut self, sources: Vec<PathBuf>, spec: ImageSpec) {
        self.cancel_load();
        self.sources = sources;
        self.reload(spec);
    }

    /// Adds dropped or picked paths (those not in the set already): each loads on its own,
    /// so one that cannot be read is listed with its reason and the others still join.
    /// Returns how many paths it started loading.
    pub fn add_paths(&mut self, paths: &[PathBuf], spec: ImageSpec) -> usize {
        let pending = self
            .loading
            .as_ref()
            .map_or(&self.sources, |load| &load.sources);
        let fresh: Vec<PathBuf> = paths
            .iter()
            .filter(|p| !pending.contains(p))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return 0;
        }
        let (mut sources, mut new) = match self.loading.take() {
            // Dropped while a load runs: the new load takes over its paths too.
            Some(load) => {
                load.progress.cancel();
                (load.sources, load.new)
            }
            None => (self.sources.clone(), Vec::new()),
        };
        sources.extend(fresh.iter().cloned());
        new.extend(fresh.iter().cloned());
        self.start_load(sources, new, spec);
        fresh.len()
    }

    pub fn remove_source(&mut self, index: usize, spec: ImageSpec) {
        if index < self.sources.len() {
            self.cancel_load();
            self.sources.remove(index);
            self.reload(spec);
        }
    }

    pub fn clear(&mut self) {
        self.cancel_load();
        self.sources.clear();
        self.images = None;
        self.rejected.clear();
        self.version += 1;
    }

    /// Loads every source again (for another model's image size, too).
    pub fn reload(&mut self, spec: ImageSpec) {
        self.cancel_load();
        if self.sources.is_empty() {
            self.images = None;
            self.rejected.clear();
            self.version += 1;
            return;
        }
        self.start_load(self.sources.clone(), Vec::new(), spec);
    }

    /// Stops the load under way; the set keeps what it had before it.
    pub fn cancel_load(&mut self) {
        if let Some(load) = self.loading.take() {
            load.progress.cancel();
        }
    }

    fn start_load(&mut self, sources: Vec<PathBuf>, new: Vec<PathBuf>, spec: ImageSpec) {
        let progress = Arc::new(LoadProgress::default());
        let (send, result) = crossbeam_channel::bounded(1);
        let job = (sources.clone(), progress.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("load {} set", self.role.name()))
            .spawn(move || {
                let (paths, progress) = job;
                // The receiver is gone when the load was cancelled or replaced.
                let _ = send.send(load_each(&paths, spec, &progress));
            });
        if let Err(e) = spawned {
            self.rejected = vec![Rejected {
                path: sources.first().cloned().unwrap_or_default(),
                reason: format!("cannot start loading: {e}"),
            }];
            return;
        }
        self.loading = Some(SetLoad {
            sources,
            new,
            progress,
            result,
        });
    }

    /// Takes the result of a load that has ended (called every frame); `None` while it runs.
    pub fn poll(&mut self) -> Option<LoadReport> {
        let load = self.loading.as_ref()?;
        let result = match load.result.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err(DataError::Unreadable {
                path: load.sources.first().cloned().unwrap_or_default(),
                reason: "the loading thread stopped without a result".into(),
            }),
        };
        Some(self.finish(result))
    }

    /// Waits for the load under way (screenshots, tests, the frame benchmark's setup).
    pub fn wait(&mut self) -> Option<LoadReport> {
        let load = self.loading.as_ref()?;
        let result = load.result.recv().unwrap_or(Err(DataError::Cancelled));
        Some(self.finish(result))
    }

    fn finish(&mut self, result: LoadResult) -> LoadReport {
        let load = self.loading.take().expect("a load to finish");
        let loaded = match result {
            Ok(loaded) => loaded,
            Err(DataError::Cancelled) => return LoadReport::Cancelled,
            Err(e) => {
                self.rejected = vec![Rejected {
                    path: load.sources.first().cloned().unwrap_or_default(),
                    reason: e.to_string(),
                }];
                self.version += 1;
                return self.report(load.new.len(), 0);
            }
        };
        // A new path that gave no image (unreadable, or every file in it rejected) stays
        // out of the sources; the set's own sources stay, listed with their reason.
        let refused: Vec<&PathBuf> = loaded
            .outcomes
            .iter()
            .filter(|(path, outcome)| {
                load.new.contains(path) && !matches!(outcome, Ok(n) if *n > 0)
            })
            .map(|(path, _)| path)
            .collect();
        let added = load.new.len() - refused.len();
        self.sources = load
            .sources
            .iter()
            .filter(|p| !refused.contains(p))
            .cloned()
            .collect();
        let unreadable = loaded.outcomes.iter().filter_map(|(path, outcome)| {
            let error = outcome.as_ref().err()?;
            Some(Rejected {
                path: path.clone(),
                reason: reason_without_path(&error.to_string(), path),
            })
        });
        self.rejected = unreadable
            .chain(loaded.set.rejected.iter().cloned())
            .collect();
        self.images = (!loaded.set.is_empty()).then_some(loaded.set);
        self.version += 1;
        self.report(load.new.len(), added)
    }

    fn report(&self, asked: usize, added: usize) -> LoadReport {
        LoadReport::Loaded {
            asked,
            added,
            rejected: self.rejected.len(),
            images: self.len(),
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
        let started = set.add_paths(
            &[demo::asset(demo::MEMORISED_TSHIRT), bad.clone()],
            demo::MNIST_SPEC,
        );
        assert_eq!(started, 2);
        assert_eq!(
            set.wait(),
            Some(LoadReport::Loaded {
                asked: 2,
                added: 1,
                rejected: 1,
                images: 1
            })
        );
        assert_eq!(set.sources, [demo::asset(demo::MEMORISED_TSHIRT)]);
        // Dropped again: nothing to load, nothing reloaded.
        let version = set.version;
        assert_eq!(
            set.add_paths(&[demo::asset(demo::MEMORISED_TSHIRT)], demo::MNIST_SPEC),
            0
        );
        assert!(!set.is_loading());
        assert_eq!(set.version, version);
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
        let back = crate::data::load_paths(&[path], demo::MNIST_SPEC).unwrap();
        assert_eq!(back.image(0), mnist.image(7));
    }
}
