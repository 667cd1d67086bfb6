//! The public checkpoints researchers bring — google/ddpm-cifar10-32, google/ddpm-celebahq-256,
//! google/ddpm-church-256 and SISS's MNIST model — held to diffusers (fixtures made by
//! `tools/make_public_configs_golden.py`, diffusers 0.42.1 / torch 2.15): Lethe builds each full
//! configuration with exactly diffusers' parameter count, and a width-reduced copy of each
//! (same block types and options) computes diffusers' forward with the same synthetic weights.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use lethe::diffusion::checkpoint::{parameter_shapes, set_parameters};
use lethe::diffusion::unet::{UNet, UNetConfig};

use crate::synthetic::unet_value;

const PUBLIC: [&str; 4] = [
    "ddpm-cifar10-32",
    "ddpm-celebahq-256",
    "ddpm-church-256",
    "siss-mnist",
];

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden/public")
        .join(rel)
}

fn read_json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap()
}

#[test]
fn each_full_public_configuration_has_diffusers_parameter_count() {
    let device = Device::flex();
    for name in PUBLIC {
        let record = read_json(&format!("full/{name}.json"));
        let config: UNetConfig = serde_json::from_value(record["config"].clone())
            .unwrap_or_else(|e| panic!("{name}: config does not parse: {e}"));
        let model = UNet::new(&config, 0, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = record["parameters"].as_u64().unwrap() as usize;
        assert_eq!(model.num_params(), expected, "{name}: parameter count");
    }
}

fn f32_tensor(io: &safetensors::SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let view = io.tensor(name).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (view.shape().to_vec(), values)
}

fn small_forward_matches(name: &str) {
    let device = Device::flex();
    let config: UNetConfig =
        serde_json::from_value(read_json(&format!("small/{name}/config.json"))).unwrap();
    let model = UNet::new(&config, 0, &device).unwrap();
    let weights: HashMap<String, Vec<f32>> = parameter_shapes(&model)
        .into_iter()
        .map(|(param, shape)| {
            let values = unet_value(&param, &shape);
            (param, values)
        })
        .collect();
    let model = set_parameters(model, weights, &device);
    let bytes = std::fs::read(fixture(&format!("small/{name}/io.safetensors"))).unwrap();
    let io = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (x_shape, x) = f32_tensor(&io, "x");
    let (_, t) = f32_tensor(&io, "t");
    let (_, expected) = f32_tensor(&io, "eps");
    let x_shape: [usize; 4] = x_shape.try_into().unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(x, x_shape), &device);
    let t = Tensor::<1>::from_floats(t.as_slice(), &device);
    let eps: Vec<f32> = model
        .forward(x, t, None)
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    let worst = eps
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4,
        "{name} (width-reduced): forward differs from diffusers by {worst:.2e}"
    );
}

#[test]
fn ddpm_cifar10_32_shaped_forward_matches_diffusers() {
    small_forward_matches("ddpm-cifar10-32");
}

#[test]
fn ddpm_celebahq_256_shaped_forward_matches_diffusers() {
    small_forward_matches("ddpm-celebahq-256");
}

#[test]
fn ddpm_church_256_shaped_forward_matches_diffusers() {
    small_forward_matches("ddpm-church-256");
}

#[test]
fn siss_mnist_shaped_forward_matches_diffusers() {
    small_forward_matches("siss-mnist");
}
