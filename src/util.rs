//! Small shared helpers: atomic writes, hashing, refusing unknown config keys.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so a
/// crash never leaves a half-written file under the final name.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    // Temp files are created 0600; the result should be an ordinary readable file (0644).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
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
