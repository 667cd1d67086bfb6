//! The data of a run: the retain and forget sets as the config describes them (the class
//! setting moves a class from retain to forget; a forget image is never retained), and
//! whatever else the method asks for.

use std::collections::HashSet;

use crate::data::{ImageSet, ImageSpec, load_paths};
use crate::experiment::ExperimentConfig;
use crate::unlearn::step::UnlearnData;

/// Loads the retain/forget (and substitute) sets as the config describes.
pub(super) fn prepare_data(
    config: &ExperimentConfig,
    spec: ImageSpec,
    model: &crate::diffusion::unet::UNetConfig,
) -> Result<UnlearnData, String> {
    let d = &config.data;
    let mut retain = if d.retain.is_empty() {
        ImageSet::empty(spec)
    } else {
        load_paths(&d.retain, spec).map_err(|e| e.to_string())?
    };
    let forget = match d.forget_class {
        Some(class) => {
            let (keep, drop): (Vec<usize>, Vec<usize>) =
                (0..retain.len()).partition(|&i| retain.labels[i] != Some(class));
            if drop.is_empty() {
                return Err(format!(
                    "data.forget_class = {class}: no retain image has that label"
                ));
            }
            let forget = retain.subset(&drop);
            retain = retain.subset(&keep);
            forget
        }
        None => {
            let mut forget = load_paths(&d.forget, spec).map_err(|e| e.to_string())?;
            if let Some(label) = d.forget_label {
                forget.labels = vec![Some(label); forget.len()];
            }
            // A forget image that is also in the retain sources must not be kept.
            let forget_pixels: HashSet<&[u8]> =
                (0..forget.len()).map(|i| forget.image(i)).collect();
            let keep: Vec<usize> = (0..retain.len())
                .filter(|&i| !forget_pixels.contains(retain.image(i)))
                .collect();
            if keep.len() != retain.len() {
                retain = retain.subset(&keep);
            }
            forget
        }
    };
    let conditional = model.num_class_embeds.is_some();
    if conditional && model.lethe_null_class.is_none() {
        let unlabelled = forget
            .labels
            .iter()
            .chain(&retain.labels)
            .any(Option::is_none);
        if unlabelled {
            return Err(
                "the checkpoint is class-conditional without a null class, so every image needs a label: set data.forget_label (and use labelled retain data)"
                    .into(),
            );
        }
    }
    let substitute = config.method.substitute_set(&retain, &forget, spec)?;
    Ok(UnlearnData {
        retain,
        forget,
        substitute,
    })
}
