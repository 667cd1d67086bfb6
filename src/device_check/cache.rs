//! Self-check verdicts kept on disk, one JSON file per (device, model, Lethe version), so a
//! device is checked once per model rather than before every run. A changed driver, model or
//! Lethe build makes a new key, and so a new check.

use std::path::{Path, PathBuf};

use crate::backend::BackendChoice;
use crate::diffusion::checkpoint;
use crate::util::{atomic_write, sha256_hex};

use super::CheckReport;

/// What a cached verdict holds for.
pub struct Key {
    digest: String,
}

impl Key {
    /// From the device's full description (name and driver version) and the checkpoint's
    /// config and weights bytes.
    pub fn new(backend: BackendChoice, device: &str, model: &Path) -> Result<Self, String> {
        let weights = checkpoint::read_bounded(&model.join(checkpoint::UNET_WEIGHTS))
            .map_err(|e| e.to_string())?;
        let config = std::fs::read(model.join(checkpoint::UNET_CONFIG))
            .map_err(|e| format!("{}: {e}", model.join(checkpoint::UNET_CONFIG).display()))?;
        let identity = format!(
            "lethe {}\n{backend:?}\n{device}\n{}\n{}",
            env!("CARGO_PKG_VERSION"),
            sha256_hex(&config),
            sha256_hex(&weights)
        );
        Ok(Self {
            digest: sha256_hex(identity.as_bytes()),
        })
    }

    fn path(&self) -> Option<PathBuf> {
        Some(dir()?.join(format!("{}.json", &self.digest[..32])))
    }
}

/// `$LETHE_CACHE_DIR`, else `$XDG_CACHE_HOME/lethe/device-checks`, else
/// `~/.cache/lethe/device-checks`.
pub fn dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LETHE_CACHE_DIR") {
        return Some(PathBuf::from(dir).join("device-checks"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("lethe").join("device-checks"))
}

/// The cached report, if there is a readable one.
pub fn read(key: &Key) -> Option<CheckReport> {
    let text = std::fs::read_to_string(key.path()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Keeps `report`; a cache that cannot be written only means checking again next time.
pub fn write(key: &Key, report: &CheckReport) {
    let Some(path) = key.path() else { return };
    if let Ok(json) = serde_json::to_string_pretty(report)
        && let Err(e) = atomic_write(&path, json.as_bytes())
    {
        eprintln!(
            "note: could not cache the device self-check at {}: {e}",
            path.display()
        );
    }
}
