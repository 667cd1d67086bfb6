//! Image files and folders of them, decoded with the `image` crate under size limits.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};

use super::{DataError, ImageSet, ImageSpec, LoadProgress, unreadable};

/// Files larger than this are not decoded.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Largest width or height accepted (a decompression bomb declares a huge canvas).
pub const MAX_DIMENSION: u32 = 8192;
/// Most memory one decode may allocate.
pub const MAX_DECODE_ALLOC: u64 = 256 << 20;

const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "webp", "gif", "tif"];

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes one file within the limits. The format is sniffed from the bytes, not trusted
/// from the extension.
pub fn decode(path: &Path) -> Result<DynamicImage, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "file is {len} bytes, over the {MAX_FILE_BYTES}-byte limit"
        ));
    }
    if len == 0 {
        return Err("empty file".into());
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    // Sniff the format from the content: a `.png` that is really text gets a clear answer.
    let format = image::guess_format(&bytes).map_err(|_| {
        "content is not a recognised image format (PNG, JPEG, BMP, WebP, GIF, TIFF)".to_string()
    })?;
    let mut reader = ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    reader.decode().map_err(|e| format!("cannot decode: {e}"))
}

/// Converts a decoded image to the target spec, naming what was done.
///
/// Rule: colour → gray uses the Rec. 709 luma 0.2126 R + 0.7152 G + 0.0722 B; gray → RGB
/// repeats the channel; alpha is dropped (composited on black); a different size is
/// resized to exactly the target with a Lanczos-3 filter (aspect ratio not preserved).
pub fn convert(img: DynamicImage, spec: ImageSpec) -> (Vec<u8>, Vec<String>) {
    let mut notes = vec![];
    let (w, h) = (img.width() as usize, img.height() as usize);
    let img = if (w, h) != (spec.width, spec.height) {
        notes.push(format!(
            "resized {w}×{h} → {}×{} (Lanczos-3)",
            spec.width, spec.height
        ));
        img.resize_exact(spec.width as u32, spec.height as u32, FilterType::Lanczos3)
    } else {
        img
    };
    let is_color = img.color().has_color();
    if img.color().has_alpha() {
        notes.push("alpha channel dropped".into());
    }
    let pixels = if spec.channels == 1 {
        if is_color {
            notes.push("RGB → gray (Rec. 709 luma)".into());
        }
        img.to_luma8().into_raw()
    } else {
        if !is_color {
            notes.push("gray → RGB (channel repeated)".into());
        }
        let rgb = img.to_rgb8();
        // HWC → CHW
        let plane = spec.width * spec.height;
        let mut chw = vec![0u8; 3 * plane];
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                chw[c * plane + i] = px[c];
            }
        }
        chw
    };
    (pixels, notes)
}

/// Loads one file into `set`; a failure becomes a rejection, never an error.
pub fn load_file_into(path: &Path, label: Option<usize>, set: &mut ImageSet) {
    match decode(path) {
        Ok(img) => {
            let (pixels, notes) = convert(img, set.spec);
            for note in notes {
                set.note_conversion(note);
            }
            set.push(&pixels, label, path.display().to_string());
        }
        Err(reason) => set.reject(path, reason),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| unreadable(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    Ok(entries)
}

/// A folder of images, or a folder with one subfolder per class (labels from the
/// subfolder names, in sorted order; images directly inside are then unlabelled). Every
/// folder is listed before the first decode, so `progress` knows the total from the start.
pub fn load_folder(
    dir: &Path,
    spec: ImageSpec,
    class_names: &mut Vec<String>,
    progress: &LoadProgress,
) -> Result<ImageSet, DataError> {
    let entries = sorted_entries(dir)?;
    let mut files: Vec<(PathBuf, Option<usize>)> = Vec::new();
    for sub in entries.iter().filter(|p| p.is_dir()) {
        let name = sub
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let label = match class_names.iter().position(|c| *c == name) {
            Some(i) => i,
            None => {
                class_names.push(name);
                class_names.len() - 1
            }
        };
        let inside = sorted_entries(sub)?.into_iter().filter(|p| p.is_file());
        files.extend(inside.map(|file| (file, Some(label))));
    }
    let loose = entries.iter().filter(|p| p.is_file());
    files.extend(loose.map(|file| (file.clone(), None)));
    progress.expect(files.len());
    let mut set = ImageSet::empty(spec);
    for (file, label) in &files {
        load_candidate(file, *label, &mut set);
        progress.step()?;
    }
    Ok(set)
}

/// Files with an image extension are decoded; other files are reported as skipped, so a
/// stray `README.txt` is visible rather than silently ignored.
fn load_candidate(file: &Path, label: Option<usize>, set: &mut ImageSet) {
    if has_image_extension(file) {
        load_file_into(file, label, set);
    } else {
        set.reject(
            file,
            "not an image file (extension is not png/jpg/jpeg/bmp/webp/gif/tif)",
        );
    }
}

/// Width and height of the first image file in `path` (a file, or a folder searched in
/// sorted order, class subfolders included), read from its header only.
pub fn first_image_size(path: &Path) -> Option<[usize; 2]> {
    if path.is_file() {
        let (w, h) = ImageReader::open(path)
            .ok()?
            .with_guessed_format()
            .ok()?
            .into_dimensions()
            .ok()?;
        return Some([h as usize, w as usize]);
    }
    let entries = sorted_entries(path).ok()?;
    let files = entries
        .iter()
        .filter(|p| p.is_file() && has_image_extension(p));
    let dirs = entries.iter().filter(|p| p.is_dir());
    files
        .filter_map(|p| first_image_size(p))
        .next()
        .or_else(|| dirs.filter_map(|d| first_image_size(d)).next())
}
