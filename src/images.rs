//! Turning sample tensors into PNG files and grids.

use std::path::Path;

use burn::tensor::Tensor;
use image::{GrayImage, ImageBuffer, Rgb, RgbImage};

use crate::util::atomic_write;

/// `[B, C, H, W]` in [-1, 1] → per-image bytes in [0, 255] (CHW), with the [0, 1] floats.
pub fn to_unit_floats(samples: Tensor<4>) -> (Vec<Vec<f32>>, [usize; 3]) {
    let [b, c, h, w] = samples.dims();
    let values = samples
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float samples");
    let n = c * h * w;
    let images = (0..b)
        .map(|i| {
            values[i * n..(i + 1) * n]
                .iter()
                .map(|v| ((v + 1.0) / 2.0).clamp(0.0, 1.0))
                .collect()
        })
        .collect();
    (images, [c, h, w])
}

fn to_u8(v: f32) -> u8 {
    (v * 255.0).round().clamp(0.0, 255.0) as u8
}

/// One image (CHW floats in [0, 1]) as an RGB image.
pub fn to_rgb(image: &[f32], [c, h, w]: [usize; 3]) -> RgbImage {
    let plane = h * w;
    ImageBuffer::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        if c == 1 {
            let g = to_u8(image[i]);
            Rgb([g, g, g])
        } else {
            Rgb([
                to_u8(image[i]),
                to_u8(image[plane + i]),
                to_u8(image[2 * plane + i]),
            ])
        }
    })
}

/// Tiles images into a grid with a 2-pixel gap, `columns` wide.
pub fn grid(images: &[Vec<f32>], shape: [usize; 3], columns: usize) -> RgbImage {
    let [_, h, w] = shape;
    let gap = 2;
    let columns = columns.max(1).min(images.len().max(1));
    let rows = images.len().div_ceil(columns);
    let mut out = RgbImage::from_pixel(
        (columns * (w + gap) + gap) as u32,
        (rows * (h + gap) + gap) as u32,
        Rgb([40, 40, 40]),
    );
    for (k, img) in images.iter().enumerate() {
        let tile = to_rgb(img, shape);
        let (x0, y0) = (
            (k % columns) * (w + gap) + gap,
            (k / columns) * (h + gap) + gap,
        );
        image::imageops::replace(&mut out, &tile, x0 as i64, y0 as i64);
    }
    out
}

/// Two images next to each other with a light separator `gap` pixels wide (e.g. the
/// original model's grid | the current model's grid).
pub fn side_by_side(left: &RgbImage, right: &RgbImage, gap: u32) -> RgbImage {
    let mut out = RgbImage::from_pixel(
        left.width() + gap + right.width(),
        left.height().max(right.height()),
        Rgb([200, 200, 200]),
    );
    image::imageops::replace(&mut out, left, 0, 0);
    image::imageops::replace(&mut out, right, (left.width() + gap) as i64, 0);
    out
}

/// Upscales by an integer factor with nearest-neighbour (keeps pixels crisp).
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    image::imageops::resize(
        img,
        img.width() * factor,
        img.height() * factor,
        image::imageops::FilterType::Nearest,
    )
}

/// Encodes as PNG (grey, RGB or RGBA — any 8/16-bit image buffer) and writes atomically.
pub fn save_png<P>(img: &image::ImageBuffer<P, Vec<P::Subpixel>>, path: &Path) -> Result<(), String>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| e.to_string())?;
    atomic_write(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// A grayscale image as PNG (for single MNIST-like samples).
pub fn save_gray_png(image: &[f32], [_, h, w]: [usize; 3], path: &Path) -> Result<(), String> {
    let img = GrayImage::from_raw(
        w as u32,
        h as u32,
        image.iter().map(|&v| to_u8(v)).collect(),
    )
    .expect("size");
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| e.to_string())?;
    atomic_write(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes every sample (values in [0, 1], `shape` = `[c, h, w]`) as `dir/sample_NNNNN.png`:
/// gray for one channel, RGB otherwise.
pub fn save_each_png(samples: &[Vec<f32>], shape: [usize; 3], dir: &Path) -> Result<(), String> {
    for (i, image) in samples.iter().enumerate() {
        let path = dir.join(format!("sample_{i:05}.png"));
        if shape[0] == 1 {
            save_gray_png(image, shape, &path)?;
        } else {
            save_png(&to_rgb(image, shape), &path)?;
        }
    }
    Ok(())
}
