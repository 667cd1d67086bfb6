//! Entry points for the cargo-fuzz targets in `fuzz/` and for their regression test: each
//! feeds arbitrary bytes to one parser exactly the way a user's file reaches it — written to
//! disk under the name Lethe expects, then read through the public loader the CLI and the
//! workbench call. A target passes when the loader returns (accepting or refusing the file);
//! a panic, a hang or an allocation past the fuzzer's limit is a finding.
//!
//! Where a format comes in several files (a checkpoint directory, an IDX images file with
//! its labels beside it), the first input byte picks which file is fuzzed and the others are
//! fixed, valid ones, so that the fuzzer gets past the first file's checks.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor};

use crate::backend::{self, BackendChoice};
use crate::data::{self, ImageSpec};
use crate::diffusion::checkpoint::{self, SCHEDULER_CONFIG, UNET_CONFIG, UNET_WEIGHTS};
use crate::diffusion::unet::{UNet, UNetConfig};

/// A fuzz entry point: a scratch folder of the caller's and the input bytes.
pub type Target = fn(&Path, &[u8]) -> Result<(), String>;

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and its seed folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("safetensors", safetensors),
    ("diffusers_config", diffusers_config),
    ("idx", idx),
    ("cifar", cifar),
    ("image", image),
    ("experiment_toml", experiment_toml),
    ("siss_yaml", siss_yaml),
    ("pretrain_toml", pretrain_toml),
    ("attack_toml", attack_toml),
    ("sweep_file", sweep_file),
    ("npy", npy),
    ("pytorch_weights", pytorch_weights),
];

/// A small conditional UNet in diffusers' format (two levels, attention at the second):
/// the model the fuzzed weights file claims to hold.
const UNET_CONFIG_JSON: &str = r#"{"_class_name":"UNet2DModel","act_fn":"silu","add_attention":true,
"attention_head_dim":8,"block_out_channels":[8,16],"down_block_types":["DownBlock2D","AttnDownBlock2D"],
"downsample_padding":1,"flip_sin_to_cos":true,"freq_shift":0,"in_channels":3,"layers_per_block":1,
"mid_block_scale_factor":1,"norm_eps":1e-05,"norm_num_groups":4,"num_class_embeds":5,"out_channels":3,
"sample_size":8,"up_block_types":["AttnUpBlock2D","UpBlock2D"]}"#;

const SCHEDULER_CONFIG_JSON: &str = r#"{"_class_name":"DDPMScheduler","beta_schedule":"linear",
"beta_start":0.0001,"beta_end":0.02,"num_train_timesteps":1000,"prediction_type":"epsilon"}"#;

/// 28×28 grey, as the demo's data sets.
const GREY_28: ImageSpec = ImageSpec {
    channels: 1,
    height: 28,
    width: 28,
};

/// The safetensors weights of [`UNET_CONFIG_JSON`]'s model: header, tensor table, metadata
/// (provenance) and the shape check against the config; and the workbench's header-only
/// reader, which must accept whatever the full load accepts.
pub fn safetensors(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = scratch(scratch_root, "checkpoint")?;
    write(&dir.join(UNET_CONFIG), UNET_CONFIG_JSON.as_bytes())?;
    write(
        &dir.join(SCHEDULER_CONFIG),
        SCHEDULER_CONFIG_JSON.as_bytes(),
    )?;
    let weights = dir.join(UNET_WEIGHTS);
    write(&weights, bytes)?;
    // The workbench's view reads the header alone; it must accept what the full load does.
    let header = checkpoint::read_header(&weights).map(drop);
    let device = backend::device(BackendChoice::Cpu)?;
    let loaded = checkpoint::load(&dir, &device)
        .map(drop)
        .map_err(|e| e.to_string());
    if loaded.is_ok() && header.is_err() {
        panic!("the header reader refused a file the full load accepts: {header:?}");
    }
    loaded
}

/// `unet/config.json` (first byte even) or `scheduler/scheduler_config.json` (odd), the
/// other one valid; an accepted UNet config is then built, as loading its weights would.
pub fn diffusers_config(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let Some((&which, text)) = bytes.split_first() else {
        return Err("empty input".into());
    };
    let dir = scratch(scratch_root, "configs")?;
    let (unet, scheduler) = if which % 2 == 0 {
        (text, SCHEDULER_CONFIG_JSON.as_bytes())
    } else {
        (UNET_CONFIG_JSON.as_bytes(), text)
    };
    write(&dir.join(UNET_CONFIG), unet)?;
    write(&dir.join(SCHEDULER_CONFIG), scheduler)?;
    let (config, _) = checkpoint::load_configs(&dir).map_err(|e| e.to_string())?;
    build_unet(&config).map_err(|e| format!("{}: {e}", dir.join(UNET_CONFIG).display()))
}

/// Builds the model a config describes: what `checkpoint::load` does before applying the
/// weights. A config the checks accept must not describe a model too big to build; a small
/// one also denoises one image, so a shape the checks let through cannot panic there.
fn build_unet(config: &UNetConfig) -> Result<(), String> {
    let device = backend::device(BackendChoice::Cpu)?;
    let model = UNet::new(config, 0, &device)?;
    if config.parameter_count() <= 2_000_000 && config.sample_size <= 32 {
        let [c, h, w] = config.image_shape();
        let x = Tensor::<4>::zeros([1, c, h, w], &device);
        let t = Tensor::<1>::from_floats([10.0], &device);
        let class = config
            .num_class_embeds
            .map(|_| Tensor::<1, Int>::from_ints([0], &device));
        let eps = model.forward(x, t, class);
        assert_eq!(eps.dims(), [1, config.out_channels, h, w]);
    }
    Ok(())
}

/// An MNIST IDX images file (first byte even) or, beside a valid one, its labels file
/// (odd); raw or gzip, told apart by the gzip magic as for users' files.
pub fn idx(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let Some((&which, content)) = bytes.split_first() else {
        return Err("empty input".into());
    };
    let dir = scratch(scratch_root, "idx")?;
    let images = dir.join("fuzz-images-idx3-ubyte");
    let labels = dir.join("fuzz-labels-idx1-ubyte");
    if which % 2 == 0 {
        remove(&labels)?;
        write(&images, content)?;
    } else {
        const COUNT: u8 = 3;
        let mut valid = vec![0, 0, 8, 3, 0, 0, 0, COUNT, 0, 0, 0, 2, 0, 0, 0, 2];
        valid.extend((0..4 * COUNT).map(|i| i * 20));
        write(&images, &valid)?;
        write(&labels, content)?;
    }
    load_data(&images, GREY_28)
}

/// A CIFAR-10 binary batch (`data_batch_N.bin`).
pub fn cifar(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = scratch(scratch_root, "cifar")?.join("data_batch_1.bin");
    write(&path, bytes)?;
    let rgb_32 = ImageSpec {
        channels: 3,
        height: 32,
        width: 32,
    };
    load_data(&path, rgb_32)
}

/// One image file (PNG, JPEG, BMP, WebP, GIF: sniffed from the bytes) through Lethe's size
/// and allocation limits, then converted to the demo's 28×28 grey.
pub fn image(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = scratch(scratch_root, "image")?.join("fuzz.png");
    write(&path, bytes)?;
    load_data(&path, GREY_28)
}

/// Loads a file as `--forget`/`--retain` does (a file that decodes to no image is refused).
fn load_data(path: &Path, spec: ImageSpec) -> Result<(), String> {
    data::load_paths(&[path.to_path_buf()], spec)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// An experiment config (`lethe unlearn CONFIG`): TOML, checked key by key.
pub fn experiment_toml(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = scratch(scratch_root, "experiment")?.join("config.toml");
    write(&path, bytes)?;
    crate::experiment::ExperimentConfig::from_file(&path).map(drop)
}

/// A SISS-style YAML experiment config (the official repository's Hydra files).
pub fn siss_yaml(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = scratch(scratch_root, "siss")?.join("config.yaml");
    write(&path, bytes)?;
    crate::experiment::ExperimentConfig::from_file(&path).map(drop)
}

/// A pretraining config (`lethe pretrain CONFIG`).
pub fn pretrain_toml(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = scratch(scratch_root, "pretrain")?.join("pretrain.toml");
    write(&path, bytes)?;
    crate::pretrain::PretrainConfig::from_file(&path).map(drop)
}

/// A DiMRA attack config (`lethe attack CONFIG`).
pub fn attack_toml(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = scratch(scratch_root, "attack")?.join("attack.toml");
    write(&path, bytes)?;
    crate::attack::dimra::AttackConfig::from_file(&path).map(drop)
}

/// A sweep file: Lethe's TOML (first byte even) or a SISS-style Hydra multirun YAML (odd),
/// expanded into its trials. Paths inside (the base config) are relative to the current
/// directory, as for `lethe sweep`; seeds name the repository's examples.
pub fn sweep_file(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let Some((&which, text)) = bytes.split_first() else {
        return Err("empty input".into());
    };
    let dir = scratch(scratch_root, "sweep")?;
    let name = if which % 2 == 0 {
        "sweep.toml"
    } else {
        "sweep.yaml"
    };
    let path = dir.join(name);
    write(&path, text)?;
    crate::sweep::expand(&path, Some(&dir.join("out"))).map(drop)
}

/// Feature files for FID: an N×D `.npy` (first byte even) or pytorch-fid's `.npz`
/// statistics (odd).
pub fn npy(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    use crate::metrics::feature_files::{read_npy_features, read_npz_stats};
    let Some((&which, content)) = bytes.split_first() else {
        return Err("empty input".into());
    };
    let dir = scratch(scratch_root, "features")?;
    if which % 2 == 0 {
        let path = dir.join("features.npy");
        write(&path, content)?;
        read_npy_features(&path).map(drop)
    } else {
        let path = dir.join("stats.npz");
        write(&path, content)?;
        read_npz_stats(&path).map(drop)
    }
}

/// A weights file for the FID Inception: `torch.save` (zip or legacy pickle, read without
/// executing it) or safetensors, sniffed from the bytes.
pub fn pytorch_weights(scratch_root: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = scratch(scratch_root, "weights")?.join("weights.pth");
    write(&path, bytes)?;
    crate::metrics::inception::read_tensors(&path, bytes).map(drop)
}

/// Runs the target named `name` in a scratch folder made once per process and thread (a
/// fuzzer calls this for every input; the folder stays when it exits).
pub fn run(name: &str, bytes: &[u8]) -> Result<(), String> {
    thread_local! {
        static SCRATCH: Result<PathBuf, String> = tempfile::Builder::new()
            .prefix("lethe-fuzz-")
            .tempdir()
            .map(tempfile::TempDir::keep)
            .map_err(|e| format!("cannot make a scratch folder: {e}"));
    }
    let (_, target) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("no fuzz target named {name}"))?;
    SCRATCH.with(|root| target(root.as_ref().map_err(Clone::clone)?, bytes))
}

/// `root/<target>/`, with the `unet/` and `scheduler/` folders a checkpoint needs.
fn scratch(root: &Path, target: &str) -> Result<PathBuf, String> {
    let dir = root.join(target);
    for sub in ["unet", "scheduler"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(dir)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn remove(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}
