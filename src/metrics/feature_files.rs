//! Feature arrays and feature statistics in NumPy's formats, so FIDs can be checked against
//! other tools on the same features: `.npy` with an N×D float array (one row per image), and
//! `.npz` with `mu` (D) and `sigma` (D×D), as pytorch-fid's `--save-stats` writes them.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use npyz::{NpyFile, Order};

use super::fid::FeatureStats;

/// An N×D feature matrix, row after row.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRows {
    pub values: Vec<f32>,
    pub dim: usize,
}

impl FeatureRows {
    pub fn count(&self) -> usize {
        self.values.len() / self.dim.max(1)
    }
}

/// Largest `.npy` header read: NumPy's own default limit (`max_header_size`).
const MAX_HEADER_BYTES: usize = 10_000;
/// Deepest nesting of brackets in a header (a structured dtype nests three levels).
const MAX_HEADER_NESTING: usize = 8;

/// Checks an `.npy` header before npyz parses it: npyz's Python-literal parser takes
/// exponential time on nested braces (found by fuzzing: a 300-byte header with a hundred
/// `{` ran past 10 s), while NumPy writes one flat dict. Reads the header from `reader`.
fn check_npy_header(reader: &mut impl Read) -> Result<(), String> {
    let mut magic = [0u8; 8];
    reader
        .read_exact(&mut magic)
        .map_err(|_| "not a NumPy .npy array (too short)".to_string())?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("not a NumPy .npy array (no \\x93NUMPY magic)".into());
    }
    let length = match magic[6] {
        1 => {
            let mut n = [0u8; 2];
            reader.read_exact(&mut n).map_err(|e| e.to_string())?;
            u16::from_le_bytes(n) as usize
        }
        2 | 3 => {
            let mut n = [0u8; 4];
            reader.read_exact(&mut n).map_err(|e| e.to_string())?;
            u32::from_le_bytes(n) as usize
        }
        v => return Err(format!("not a NumPy .npy array (format version {v})")),
    };
    if length > MAX_HEADER_BYTES {
        return Err(format!(
            "the .npy header is {length} bytes, more than NumPy's {MAX_HEADER_BYTES}"
        ));
    }
    let mut header = vec![0u8; length];
    reader
        .read_exact(&mut header)
        .map_err(|_| "not a NumPy .npy array (header cut short)".to_string())?;
    let (mut depth, mut deepest, mut dicts) = (0usize, 0usize, 0usize);
    for &byte in &header {
        match byte {
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
                dicts += usize::from(byte == b'{');
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if dicts > 1 || deepest > MAX_HEADER_NESTING {
        return Err(format!(
            "not a NumPy .npy array (its header is not one flat dict: {dicts} dicts, brackets {deepest} deep)"
        ));
    }
    Ok(())
}

/// Reads an N×D `.npy` of float32 or float64 features.
pub fn read_npy_features(path: &Path) -> Result<FeatureRows, String> {
    let fail = |reason: String| format!("{}: {reason}", path.display());
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut reader = BufReader::new(file);
    check_npy_header(&mut reader).map_err(&fail)?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| fail(e.to_string()))?;
    let npy = NpyFile::new(reader).map_err(|e| fail(format!("not a NumPy .npy array ({e})")))?;
    let shape = npy.shape().to_vec();
    let [n, dim] = shape[..] else {
        return Err(fail(format!(
            "expected a 2-D array of features (N×D), found shape {shape:?}"
        )));
    };
    let values = float_values(npy).map_err(&fail)?;
    let (n, dim) = (n as usize, dim as usize);
    debug_assert_eq!(values.len(), n * dim);
    Ok(FeatureRows {
        values: values.into_iter().map(|v| v as f32).collect(),
        dim,
    })
}

/// Writes an N×D float32 `.npy` (atomically: temp file, then rename).
pub fn write_npy_features(path: &Path, rows: &FeatureRows) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut bytes = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[rows.count() as u64, rows.dim as u64])
            .writer(&mut bytes)
            .begin_nd()
            .map_err(fail)?;
        writer.extend(rows.values.iter().copied()).map_err(fail)?;
        writer.finish().map_err(fail)?;
    }
    crate::util::atomic_write(path, &bytes).map_err(fail)
}

/// Writes `mu` and `sigma` as pytorch-fid's `.npz` (float64), atomically.
pub fn write_npz_stats(path: &Path, stats: &FeatureStats) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let d = stats.dim() as u64;
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        use npyz::WriterBuilder;
        let mut npz = npyz::npz::NpzWriter::new(&mut cursor);
        let mut mu = npz
            .array::<f64>("mu", Default::default())
            .map_err(fail)?
            .default_dtype()
            .shape(&[d])
            .begin_nd()
            .map_err(fail)?;
        mu.extend(stats.mean.iter().copied()).map_err(fail)?;
        mu.finish().map_err(fail)?;
        // C order: nalgebra iterates column by column, so iterate the transpose.
        let mut sigma = npz
            .array::<f64>("sigma", Default::default())
            .map_err(fail)?
            .default_dtype()
            .shape(&[d, d])
            .begin_nd()
            .map_err(fail)?;
        sigma
            .extend(stats.covariance.transpose().iter().copied())
            .map_err(fail)?;
        sigma.finish().map_err(fail)?;
        npz.zip_writer()
            .finish()
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    crate::util::atomic_write(path, &cursor.into_inner()).map_err(fail)
}

/// Reads `mu` and `sigma` from an `.npz` (pytorch-fid's statistics file).
pub fn read_npz_stats(path: &Path) -> Result<FeatureStats, String> {
    let fail = |reason: String| format!("{}: {reason}", path.display());
    std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    let mut archive = npyz::npz::NpzArchive::open(path)
        .map_err(|e| fail(format!("not a NumPy .npz archive ({e})")))?;
    let mut array = |name: &str| -> Result<(Vec<u64>, Vec<f64>), String> {
        if let Ok(mut member) = archive.zip_archive().by_name(&format!("{name}.npy")) {
            check_npy_header(&mut member).map_err(|e| fail(format!("`{name}`: {e}")))?;
        }
        let npy = archive
            .by_name(name)
            .map_err(|e| fail(format!("cannot read `{name}` ({e})")))?
            .ok_or_else(|| fail(format!("has no array `{name}` (need `mu` and `sigma`)")))?;
        let shape = npy.shape().to_vec();
        Ok((shape, float_values(npy).map_err(&fail)?))
    };
    let (mu_shape, mu) = array("mu")?;
    let (sigma_shape, sigma) = array("sigma")?;
    if mu_shape.len() != 1 || sigma_shape.len() != 2 {
        return Err(fail(format!(
            "`mu` must be 1-D and `sigma` 2-D; found shapes {mu_shape:?} and {sigma_shape:?}"
        )));
    }
    if mu.iter().chain(&sigma).any(|v| !v.is_finite()) {
        return Err(fail("`mu` or `sigma` holds non-finite values".into()));
    }
    FeatureStats::from_parts(mu, sigma).map_err(fail)
}

/// The values of a float32/float64 C-order array, as f64.
fn float_values<R: Read>(npy: NpyFile<R>) -> Result<Vec<f64>, String> {
    if npy.order() != Order::C {
        return Err("Fortran-order arrays are not supported; save with C order".into());
    }
    let dtype = npy.dtype().descr();
    match dtype.as_str() {
        "'<f4'" | "'>f4'" => Ok(npy
            .into_vec::<f32>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(f64::from)
            .collect()),
        "'<f8'" | "'>f8'" => npy.into_vec::<f64>().map_err(|e| e.to_string()),
        other => Err(format!(
            "values must be float32 or float64, found dtype {other}"
        )),
    }
}

/// One side of a Fréchet distance: its statistics and where they came from.
pub struct FidSide {
    pub stats: FeatureStats,
    /// e.g. `1000 images from runs/x/samples → lethe-mnist11@1a2b3c4d features (128-d)`.
    pub description: String,
}

/// How an FID input path is read, decided by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FidInputKind {
    /// `.npz` with `mu` and `sigma`.
    Statistics,
    /// `.npy` N×D features.
    Features,
    /// Anything else: images (files, folders, IDX, CIFAR batches), featurised by a classifier.
    Images,
}

impl FidInputKind {
    pub fn of(path: &Path) -> Self {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("npz") => Self::Statistics,
            Some("npy") => Self::Features,
            _ => Self::Images,
        }
    }
}

/// Statistics of an `.npz` or `.npy` input (no feature network needed).
pub fn fid_side_from_file(path: &Path) -> Result<FidSide, String> {
    match FidInputKind::of(path) {
        FidInputKind::Statistics => {
            let stats = read_npz_stats(path)?;
            let description = format!(
                "statistics from {} (mu, sigma; {}-d; sample count not recorded)",
                path.display(),
                stats.dim()
            );
            Ok(FidSide { stats, description })
        }
        FidInputKind::Features => {
            let rows = read_npy_features(path)?;
            let stats = FeatureStats::from_rows(&rows.values, rows.dim)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let description = format!(
                "{} feature vectors from {} ({}-d)",
                rows.count(),
                path.display(),
                rows.dim
            );
            Ok(FidSide { stats, description })
        }
        FidInputKind::Images => Err(format!(
            "{}: images need a feature network (use fid_side_from_images)",
            path.display()
        )),
    }
}

/// Statistics of a feature network's features of the images at `path`.
pub fn fid_side_from_images(
    path: &Path,
    net: &super::feature_net::FeatureNet,
    device: &burn::tensor::Device,
) -> Result<FidSide, String> {
    let spec = net.input_spec(path)?;
    let set = crate::data::load_paths(&[path.to_path_buf()], spec).map_err(|e| e.to_string())?;
    let images: Vec<Vec<f32>> = (0..set.len()).map(|i| set.unit_image(i)).collect();
    let shape = [spec.channels, spec.height, spec.width];
    let features = net
        .features(&images, shape, device)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let stats = FeatureStats::from_rows(&features, net.dim())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut description = format!(
        "{} images from {} → {} features ({}-d)",
        images.len(),
        path.display(),
        net.label(),
        net.dim()
    );
    for (conversion, count) in &set.conversions {
        description += &format!("; {conversion} ×{count}");
    }
    if !set.rejected.is_empty() {
        description += &format!(
            "; {} file(s) rejected (`lethe data {}` lists why)",
            set.rejected.len(),
            path.display()
        );
    }
    Ok(FidSide { stats, description })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `.npy` v1 file with `header` as its header text and no data.
    fn npy_with_header(header: &str) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes
    }

    #[test]
    fn a_header_that_is_not_one_flat_dict_is_refused_before_npyz_parses_it() {
        let plain = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
        assert_eq!(check_npy_header(&mut &npy_with_header(plain)[..]), Ok(()));
        let structured = "{'descr': [('a', '<f4', (2,))], 'fortran_order': False, 'shape': (2,), }";
        assert_eq!(
            check_npy_header(&mut &npy_with_header(structured)[..]),
            Ok(())
        );
        // The fuzzer's hang: npyz's parser backtracks exponentially on nested braces.
        let nested = format!(
            "{{'descr': '<f4', {} 'shape': (20, 32), }}",
            "{".repeat(100)
        );
        let error = check_npy_header(&mut &npy_with_header(&nested)[..]).unwrap_err();
        assert!(error.contains("not one flat dict: 101 dicts"), "{error}");
        let deep = format!("{{'shape': {}1{} }}", "(".repeat(9), ")".repeat(9));
        let error = check_npy_header(&mut &npy_with_header(&deep)[..]).unwrap_err();
        assert!(error.contains("brackets 10 deep"), "{error}");
        let huge = npy_with_header(&" ".repeat(20_000));
        assert!(
            check_npy_header(&mut &huge[..])
                .unwrap_err()
                .contains("20000 bytes")
        );
    }

    #[test]
    fn statistics_and_features_written_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let rows = FeatureRows {
            values: vec![0.5, -1.0, 2.0, 0.25, 3.0, 1.5, -0.75, 0.0, 1.0],
            dim: 3,
        };
        let npy = dir.path().join("f.npy");
        write_npy_features(&npy, &rows).unwrap();
        assert_eq!(read_npy_features(&npy).unwrap(), rows);
        let stats = FeatureStats::from_rows(&rows.values, rows.dim).unwrap();
        let npz = dir.path().join("s.npz");
        write_npz_stats(&npz, &stats).unwrap();
        let back = read_npz_stats(&npz).unwrap();
        assert_eq!(back.mean, stats.mean);
        assert_eq!(back.covariance, stats.covariance);
    }
}
