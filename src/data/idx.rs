//! MNIST's IDX format (`*-images-idx3-ubyte`, `*-labels-idx1-ubyte`, optionally `.gz`).
//! The labels file beside an images file is found by the MNIST naming convention.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataError, ImageSet, ImageSpec, LoadProgress, unreadable};

/// Largest decompressed IDX payload accepted (MNIST's 60k training images are 47 MB).
const MAX_IDX_BYTES: u64 = 1 << 30;

pub fn looks_like_idx(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.contains("idx3") || name.contains("idx1") || name.ends_with(".idx")
}

/// Reads a file, gunzipping when it starts with the gzip magic, within the size limit.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| unreadable(path, e.to_string()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_IDX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| unreadable(path, format!("corrupt gzip stream: {e}")))?;
        if out.len() as u64 > MAX_IDX_BYTES {
            return Err(unreadable(
                path,
                format!("decompresses to more than {MAX_IDX_BYTES} bytes"),
            ));
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX header: returns the dimensions, checking type (unsigned byte) and that
/// the payload length is exactly what the header claims.
pub fn parse_idx(bytes: &[u8], path: &Path, expected_rank: usize) -> Result<Vec<usize>, DataError> {
    if bytes.len() < 4 {
        return Err(unreadable(path, "too short to be an IDX file"));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(unreadable(
            path,
            "bad IDX magic number (first two bytes must be 0)",
        ));
    }
    if bytes[2] != 0x08 {
        return Err(unreadable(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported (only unsigned byte, 0x08)",
                bytes[2]
            ),
        ));
    }
    let rank = bytes[3] as usize;
    if rank != expected_rank {
        return Err(unreadable(
            path,
            format!("IDX file has {rank} dimensions, expected {expected_rank}"),
        ));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(unreadable(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let payload = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match payload {
        Some(n) if n == bytes.len() - header => Ok(dims),
        Some(n) => Err(unreadable(
            path,
            format!(
                "header promises {n} bytes of data but the file holds {}",
                bytes.len() - header
            ),
        )),
        None => Err(unreadable(path, "header dimensions overflow")),
    }
}

fn labels_path_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let candidate = name
        .replace("images-idx3", "labels-idx1")
        .replace("images.idx3", "labels.idx1");
    (candidate != name)
        .then(|| images.with_file_name(candidate))
        .filter(|p| p.exists())
}

pub fn load_idx_images(
    path: &Path,
    spec: ImageSpec,
    progress: &LoadProgress,
) -> Result<ImageSet, DataError> {
    let bytes = read_maybe_gzip(path)?;
    let dims = parse_idx(&bytes, path, 3)?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    // A zero side matches an empty payload whatever the count claims (found by fuzzing:
    // 754,975,232 images of 24,113×0 pixels in a 16-byte file).
    if n > 0 && (h == 0 || w == 0) {
        return Err(unreadable(
            path,
            format!("IDX header promises {n} images of {h}×{w} pixels: a side of 0"),
        ));
    }
    super::check_converted_size(path, n, spec)?;
    let labels = match labels_path_for(path) {
        Some(lp) => {
            let lb = read_maybe_gzip(&lp)?;
            let ld = parse_idx(&lb, &lp, 1)?;
            if ld[0] != n {
                return Err(unreadable(
                    &lp,
                    format!("{} labels for {n} images in {}", ld[0], path.display()),
                ));
            }
            Some(lb[8..].to_vec())
        }
        None => None,
    };
    let mut set = ImageSet::empty(spec);
    let data = &bytes[16..];
    progress.expect(n);
    for i in 0..n {
        let gray = image::GrayImage::from_raw(
            w as u32,
            h as u32,
            data[i * h * w..(i + 1) * h * w].to_vec(),
        )
        .expect("slice length matches dimensions");
        let (pixels, notes) = super::files::convert(image::DynamicImage::ImageLuma8(gray), spec);
        for note in notes {
            set.note_conversion(note);
        }
        set.push(
            &pixels,
            labels.as_ref().map(|l| l[i] as usize),
            format!("{}#{i}", path.display()),
        );
        progress.step()?;
    }
    Ok(set)
}
