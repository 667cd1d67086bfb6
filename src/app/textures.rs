//! egui textures of the sample grids, the CPU heat map and set thumbnails: created once
//! per slot and updated with `TextureHandle::set` when their content changes.

use std::collections::HashMap;

use eframe::egui::{self, ColorImage, TextureHandle, TextureOptions};

#[derive(Default)]
pub struct Textures {
    slots: HashMap<String, (u64, TextureHandle)>,
}

impl Textures {
    /// The texture for `slot`, (re)filled by `make` only when `version` changed.
    pub fn get(
        &mut self,
        ctx: &egui::Context,
        slot: &str,
        version: u64,
        make: impl FnOnce() -> ColorImage,
    ) -> &TextureHandle {
        let entry = self.slots.entry(slot.to_string());
        let slot_entry = match entry {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if o.get().0 != version {
                    let image = make();
                    o.get_mut().1.set(image, TextureOptions::NEAREST);
                    o.get_mut().0 = version;
                }
                o.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let handle = ctx.load_texture(slot, make(), TextureOptions::NEAREST);
                v.insert((version, handle))
            }
        };
        &slot_entry.1
    }
}

/// Grey or RGB samples in [0, 1] (CHW) tiled like `images::grid`.
pub fn grid_image(images: &[Vec<f32>], shape: [usize; 3], columns: usize) -> ColorImage {
    let rgb = crate::images::grid(images, shape, columns);
    ColorImage::from_rgb([rgb.width() as usize, rgb.height() as usize], rgb.as_raw())
}

/// 8-bit CHW images of a set, tiled.
pub fn thumbnails(set: &crate::data::ImageSet, indices: &[usize], columns: usize) -> ColorImage {
    let spec = set.spec;
    let shape = [spec.channels, spec.height, spec.width];
    let floats: Vec<Vec<f32>> = indices.iter().map(|&i| set.unit_image(i)).collect();
    grid_image(&floats, shape, columns)
}
