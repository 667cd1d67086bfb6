//! CIFAR-10 binary batches (`data_batch_N.bin`, `test_batch.bin`): records of one label
//! byte then 3072 bytes (R, G, B planes of 32×32). Class names come from
//! `batches.meta.txt` beside the batch when present.

use std::path::Path;

use super::{DataError, ImageSet, ImageSpec, LoadProgress, unreadable};

const RECORD: usize = 1 + 3 * 32 * 32;

pub fn looks_like_cifar(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".bin") && (name.contains("batch"))
}

pub fn load_cifar_batch(
    path: &Path,
    spec: ImageSpec,
    progress: &LoadProgress,
) -> Result<ImageSet, DataError> {
    let bytes = std::fs::read(path).map_err(|e| unreadable(path, e.to_string()))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(unreadable(
            path,
            format!(
                "{} bytes is not a whole number of CIFAR-10 records ({RECORD} bytes each)",
                bytes.len()
            ),
        ));
    }
    super::check_converted_size(path, bytes.len() / RECORD, spec)?;
    let mut set = ImageSet::empty(spec);
    progress.expect(bytes.len() / RECORD);
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        progress.step()?;
        let label = record[0] as usize;
        if label > 9 {
            set.reject(
                path,
                format!("record {i}: label {label} is not a CIFAR-10 class (0–9)"),
            );
            continue;
        }
        let planes = &record[1..];
        let mut rgb = image::RgbImage::new(32, 32);
        for (p, px) in rgb.pixels_mut().enumerate() {
            *px = image::Rgb([planes[p], planes[1024 + p], planes[2048 + p]]);
        }
        let (pixels, notes) = super::files::convert(image::DynamicImage::ImageRgb8(rgb), spec);
        for note in notes {
            set.note_conversion(note);
        }
        set.push(&pixels, Some(label), format!("{}#{i}", path.display()));
    }
    if let Ok(meta) = std::fs::read_to_string(path.with_file_name("batches.meta.txt")) {
        set.class_names = meta
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
    }
    Ok(set)
}
