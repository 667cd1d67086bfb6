//! Small shared helpers: atomic writes, hashing, refusing unknown config keys.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// crash never leaves a half-written file under the final name. The temporary file's name is
/// fixed per destination ([`partial_name`]): a write cut short by a kill leaves one such file,
/// which the next write of the same file replaces — runs do not pile up temporary files.
/// (One writer per file: every file Lethe writes this way belongs to one run or command.)
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name to write")
    })?;
    let partial = dir.join(partial_name(&file_name.to_string_lossy()));
    let written = std::fs::File::create(&partial).and_then(|mut file| {
        // An ordinary readable file (0644), whatever the umask.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&partial, path)) {
        // A full disk or an unwritable directory: leave nothing half-written behind.
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok(())
}

/// The temporary name [`atomic_write`] writes `file_name` under before renaming it.
fn partial_name(file_name: &str) -> String {
    format!(".{file_name}.partial")
}

/// Whether `file_name` is a temporary file of a write cut short: [`atomic_write`]'s, or the
/// random `.tmpXXXXXX` names of versions before it had fixed ones.
pub fn is_partial_write(file_name: &str) -> bool {
    (file_name.starts_with('.') && file_name.ends_with(".partial")) || file_name.starts_with(".tmp")
}

/// Cosine decay from `base` (at `progress` 0) to `floor_fraction × base` (at 1); `progress`
/// is clamped to [0, 1]. Shared by every Lethe learning-rate schedule.
pub fn cosine_decay(base: f64, progress: f64, floor_fraction: f64) -> f64 {
    let p = progress.clamp(0.0, 1.0);
    base * (floor_fraction
        + (1.0 - floor_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

/// Refuses, while a config table is read, the keys that none of its fields took. serde
/// ignores `deny_unknown_fields` on a struct flattened into another (and on the struct around
/// it), so a flattened struct ends with `#[serde(flatten, skip_serializing)] unknown:
/// NoUnknownKeys`: the leftover keys reach this field, and the first one fails the read
/// with serde's own message, ``unknown field `key` ``.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoUnknownKeys;

impl<'de> serde::Deserialize<'de> for NoUnknownKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Leftovers;
        impl<'de> serde::de::Visitor<'de> for Leftovers {
            type Value = NoUnknownKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("no keys besides the table's fields")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                match map.next_key::<String>()? {
                    Some(key) => Err(serde::de::Error::custom(format!("unknown field `{key}`"))),
                    None => Ok(NoUnknownKeys),
                }
            }
        }
        deserializer.deserialize_map(Leftovers)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_a_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.bin");
        // What a write killed half-way leaves: replaced by the next write of the same file.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path.with_file_name(".out.bin.partial"), b"half").unwrap();
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o044, 0o044, "group/other can read: {mode:o}");
        }
    }
}
