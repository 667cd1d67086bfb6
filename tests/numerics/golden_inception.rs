//! Lethe's FID Inception-v3 against pytorch-fid's own model classes, on the fixtures that
//! `tools/make_inception_golden.py` wrote: pool3 features of a few images, and the FID of two
//! small folders from `calculate_fid_given_paths`. The weights are synthetic (a function of
//! each tensor's name, reproduced here bit for bit) because the real file cannot be
//! committed; the same network code runs with the real weights.

use std::path::{Path, PathBuf};

use lethe::metrics::feature_files::{fid_side_from_images, read_npy_features};
use lethe::metrics::feature_net::FeatureNet;
use lethe::metrics::fid::frechet_distance;
use lethe::metrics::inception::{INCEPTION_DIM, Inception, LoadedInception, read_tensors};

use crate::synthetic::unit_values;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inception")
        .join(name)
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

/// The script's `synthetic_value`: the same float32 operations in the same order.
fn synthetic_value(name: &str, shape: &[usize]) -> Vec<f32> {
    let unit = unit_values(name, shape);
    let affine = |a: f32, b: f32| unit.clone().map(|v| a + b * v).collect::<Vec<f32>>();
    if name.ends_with("running_var") {
        affine(1.0, 0.5)
    } else if name.ends_with("running_mean") {
        unit.map(|v| 0.1f32 * v).collect()
    } else if name.contains(".bn.weight") {
        affine(1.0, 0.2)
    } else if name.contains(".bn.bias") {
        unit.map(|v| 0.1f32 * v).collect()
    } else if name.ends_with("conv.weight") {
        let fan_in: usize = shape[1..].iter().product();
        let scale = (6.0 / fan_in as f64).sqrt() as f32;
        unit.map(|v| scale * v).collect()
    } else {
        unit.map(|v| 0.01f32 * v).collect()
    }
}

/// The synthetic weights as a safetensors file (the form `inception:PATH` also reads).
fn write_synthetic_weights(dir: &Path) -> PathBuf {
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Inception::expected_tensors()
        .into_iter()
        .map(|(name, shape)| {
            let bytes = synthetic_value(&name, &shape)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (name, shape, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    let path = dir.join("inception.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

fn synthetic_inception(dir: &Path) -> FeatureNet {
    let device = burn::tensor::Device::flex();
    let path = write_synthetic_weights(dir);
    FeatureNet::Inception(std::sync::Arc::new(
        LoadedInception::load(&path, &device).unwrap(),
    ))
}

#[test]
fn pool3_features_and_folder_fid_match_pytorch_fid() {
    let dir = tempfile::tempdir().unwrap();
    let net = synthetic_inception(dir.path());
    let device = burn::tensor::Device::flex();

    // Features of each image, as pytorch-fid's get_activations gave them.
    let reference = read_npy_features(&fixture("features.npy")).unwrap();
    assert_eq!(reference.dim, INCEPTION_DIM);
    let names = expected()["images"].as_array().unwrap().clone();
    let mut worst = 0f32;
    for (row, name) in names.iter().enumerate() {
        let path = fixture(name.as_str().unwrap());
        let spec = net.input_spec(&path).unwrap();
        let set = lethe::data::load_paths(&[path], spec).unwrap();
        let shape = [spec.channels, spec.height, spec.width];
        let ours = net.features(&[set.unit_image(0)], shape, &device).unwrap();
        let theirs = &reference.values[row * INCEPTION_DIM..(row + 1) * INCEPTION_DIM];
        for (a, b) in ours.iter().zip(theirs) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("pool3 features: worst difference from pytorch-fid {worst:.2e}");
    assert!(
        worst <= 1e-4,
        "pool3 features differ from pytorch-fid's by up to {worst:.2e} (limit 1e-4)"
    );

    // FID between the two folders, through the same path `lethe fid` takes.
    let a = fid_side_from_images(&fixture("a"), &net, &device).unwrap();
    let b = fid_side_from_images(&fixture("b"), &net, &device).unwrap();
    let ours = frechet_distance(&a.stats, &b.stats).unwrap();
    let theirs = expected()["fid"].as_f64().unwrap();
    let relative = (ours - theirs).abs() / theirs;
    eprintln!("FID {ours} vs pytorch-fid {theirs} (relative {relative:.2e})");
    assert!(
        relative <= 1e-3,
        "FID {ours} vs pytorch-fid's calculate_fid_given_paths {theirs} (relative {relative:.2e})"
    );
    // The grayscale images in b are repeated to three channels, as PIL's convert('RGB').
    assert!(b.description.contains("gray → RGB"), "{}", b.description);
}

#[test]
fn both_torch_save_containers_read_the_same_tensors() {
    for file in ["tiny_zip.pth", "tiny_legacy.pth"] {
        let path = fixture(file);
        let bytes = std::fs::read(&path).unwrap();
        let tensors = read_tensors(&path, &bytes).unwrap();
        // Float tensors only: the int64 `num_batches_tracked` is skipped.
        assert_eq!(tensors.len(), 2, "{file}");
        for (name, shape) in [
            ("block.conv.weight", vec![4, 3, 3, 3]),
            ("block.bn.running_var", vec![4]),
        ] {
            let (found_shape, values) = &tensors[name];
            assert_eq!(found_shape, &shape, "{file}: {name}");
            assert_eq!(values, &synthetic_value(name, &shape), "{file}: {name}");
        }
    }
}

#[test]
fn a_file_that_is_not_the_inception_weights_is_refused_with_its_name() {
    let device = burn::tensor::Device::flex();
    let path = fixture("tiny_zip.pth");
    let err = LoadedInception::load(&path, &device).err().unwrap();
    assert!(err.contains("tiny_zip.pth"), "{err}");
    assert!(err.contains("Conv2d_1a_3x3.conv.weight"), "{err}");
}

#[test]
fn kid_matches_clean_fid_on_the_same_features() {
    use lethe::metrics::kid::kernel_inception_distance;
    let features = read_npy_features(&fixture("features.npy")).unwrap();
    let half = features.values.len() / 2;
    let ours = kernel_inception_distance(
        &features.values[..half],
        &features.values[half..],
        features.dim,
    )
    .unwrap();
    let theirs = expected()["kid"].as_f64().unwrap();
    let relative = (ours - theirs).abs() / theirs.abs();
    assert!(
        relative <= 1e-6,
        "KID {ours} vs clean-fid's kernel_distance {theirs} (relative {relative:.2e})"
    );
}
