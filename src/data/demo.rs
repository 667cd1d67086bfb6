//! The bundled demo data (see `assets/README.md` for provenance and licenses): 10,000
//! MNIST digits, 1,000 Fashion-MNIST T-shirts, and the one T-shirt the demo model memorises.

use std::path::{Path, PathBuf};

use super::{DataError, ImageSet, ImageSpec, load_paths};

pub const MNIST_IMAGES: &str = "assets/data/mnist-10k-images-idx3-ubyte.gz";
pub const TSHIRTS_IMAGES: &str = "assets/data/tshirts-1k-images-idx3-ubyte.gz";
pub const MEMORISED_TSHIRT: &str = "assets/data/tshirt.png";
pub const DEMO_CHECKPOINT: &str = "assets/demo-model";
pub const DEMO_CLASSIFIER: &str = "assets/classifier";

/// Label of the T-shirt class in the demo's 11-class world (digits are 0–9).
pub const TSHIRT_LABEL: usize = 10;

pub const MNIST_SPEC: ImageSpec = ImageSpec {
    channels: 1,
    height: 28,
    width: 28,
};

pub fn class_names() -> Vec<String> {
    (0..10)
        .map(|d| d.to_string())
        .chain(std::iter::once("T-shirt".to_string()))
        .collect()
}

/// Resolves a bundled asset relative to the working directory or, failing that, to the
/// crate root (so tests and `cargo run` from anywhere in the repo find it).
pub fn asset(rel: &str) -> PathBuf {
    let here = PathBuf::from(rel);
    if here.exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn mnist() -> Result<ImageSet, DataError> {
    load_paths(&[asset(MNIST_IMAGES)], MNIST_SPEC)
}

pub fn tshirts() -> Result<ImageSet, DataError> {
    load_paths(&[asset(TSHIRTS_IMAGES)], MNIST_SPEC)
}

pub fn memorised_tshirt() -> Result<ImageSet, DataError> {
    let mut set = load_paths(&[asset(MEMORISED_TSHIRT)], MNIST_SPEC)?;
    set.labels = vec![Some(TSHIRT_LABEL)];
    Ok(set)
}
