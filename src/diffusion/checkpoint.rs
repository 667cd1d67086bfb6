//! Checkpoints in diffusers' layout:
//!
//! ```text
//! DIR/unet/config.json
//! DIR/unet/diffusion_pytorch_model.safetensors   (Lethe provenance in __metadata__)
//! DIR/scheduler/scheduler_config.json
//! ```
//!
//! Loading is strict: every tensor the config implies must be present with the same
//! shape, and no tensor may be left over; the first mismatch is reported with both shapes.
//! Every file is written atomically (temp file + rename), and a save never writes into
//! the directory a model was loaded from unless the caller asks to replace it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::sampler::{SampleJob, SamplerSpec};
use super::schedule::{NoiseSchedule, SchedulerConfig};
use super::unet::{UNet, UNetConfig};
use crate::util::{atomic_write, sha256_hex};

pub const UNET_CONFIG: &str = "unet/config.json";
pub const UNET_WEIGHTS: &str = "unet/diffusion_pytorch_model.safetensors";
pub const SCHEDULER_CONFIG: &str = "scheduler/scheduler_config.json";

/// Largest weights file Lethe will read (a 256×256 diffusers UNet is ~450 MB).
const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error(
        "{path}: tensor `{name}` has shape {found:?} in the checkpoint but the config expects {expected:?}"
    )]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor `{name}` required by the config is missing from the checkpoint")]
    Missing { path: PathBuf, name: String },
    #[error(
        "{path}: the checkpoint holds {count} tensor(s) the config does not describe, e.g. `{example}`"
    )]
    Unexpected {
        path: PathBuf,
        count: usize,
        example: String,
    },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A loaded model with everything needed to sample from it or train it further.
pub struct Checkpoint {
    pub unet: UNet,
    pub config: UNetConfig,
    pub scheduler: SchedulerConfig,
    pub schedule: NoiseSchedule,
    /// The safetensors `__metadata__` (Lethe provenance, if Lethe wrote it).
    pub metadata: BTreeMap<String, String>,
    /// SHA-256 of the weights file: the parent hash of anything trained from this.
    pub weights_sha256: String,
    pub dir: PathBuf,
}

impl Checkpoint {
    /// A sampling job for this checkpoint's model, noise schedule, image shape and null class.
    pub fn sample_job<'a>(&'a self, spec: &'a SamplerSpec, device: &'a Device) -> SampleJob<'a> {
        SampleJob {
            model: &self.unet,
            schedule: &self.schedule,
            spec,
            shape: self.config.image_shape(),
            null_class: self.config.lethe_null_class,
            device,
        }
    }
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| format_err(path, format!("invalid JSON: {e}")))
}

/// Reads only the configs (for `lethe inspect` and config checks).
pub fn load_configs(dir: &Path) -> Result<(UNetConfig, SchedulerConfig), CheckpointError> {
    if !dir.is_dir() {
        return Err(io_err(
            dir,
            "not a checkpoint directory (expected unet/ and scheduler/ inside)",
        ));
    }
    let config_path = dir.join(UNET_CONFIG);
    let config: UNetConfig = read_json(&config_path)?;
    config.validate().map_err(|e| format_err(&config_path, e))?;
    let sched_path = dir.join(SCHEDULER_CONFIG);
    let scheduler: SchedulerConfig = if sched_path.exists() {
        read_json(&sched_path)?
    } else {
        SchedulerConfig::default()
    };
    NoiseSchedule::from_config(&scheduler).map_err(|e| format_err(&sched_path, e))?;
    Ok((config, scheduler))
}

pub fn load(dir: &Path, device: &Device) -> Result<Checkpoint, CheckpointError> {
    let (config, scheduler) = load_configs(dir)?;
    let schedule = NoiseSchedule::from_config(&scheduler)
        .map_err(|e| format_err(&dir.join(SCHEDULER_CONFIG), e))?;
    let weights_path = dir.join(UNET_WEIGHTS);
    let bytes = read_bounded(&weights_path)?;
    let weights_sha256 = sha256_hex(&bytes);
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| format_err(&weights_path, format!("not a valid safetensors file: {e}")))?;
    let metadata: BTreeMap<String, String> = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| format_err(&weights_path, format!("not a valid safetensors file: {e}")))?;
    let fresh = UNet::new(&config, 0, device).map_err(|e| format_err(&dir.join(UNET_CONFIG), e))?;
    let unet = apply_weights(fresh, &tensors, &weights_path, device)?;
    Ok(Checkpoint {
        unet,
        config,
        scheduler,
        schedule,
        metadata,
        weights_sha256,
        dir: dir.to_path_buf(),
    })
}

/// Largest safetensors header read (the format's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The tensor table and `__metadata__` of a safetensors file, read from its header alone
/// (the first 8 + n bytes) by the safetensors crate's own parser, with the file's length
/// checked against the table: what the workbench shows without reading the weights (a
/// 450 MB file read on the GUI thread would stall it).
pub fn read_header(path: &Path) -> Result<safetensors::tensor::Metadata, CheckpointError> {
    use std::io::Read;
    let invalid =
        |reason: String| format_err(path, format!("not a valid safetensors file: {reason}"));
    let mut file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let len = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut size = [0u8; 8];
    file.read_exact(&mut size)
        .map_err(|_| invalid(format!("{len} bytes is too short for its header length")))?;
    let n = u64::from_le_bytes(size);
    if n > MAX_HEADER_BYTES || 8 + n > len {
        return Err(invalid(format!(
            "a header of {n} bytes in a {len}-byte file"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| io_err(path, e))?;
    let metadata: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| invalid(e.to_string()))?;
    let described = 8 + n + metadata.data_len() as u64;
    if described != len {
        return Err(invalid(format!(
            "its header describes {described} bytes but the file holds {len}"
        )));
    }
    Ok(metadata)
}

pub fn read_bounded(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let len = std::fs::metadata(path).map_err(|e| io_err(path, e))?.len();
    if len > MAX_WEIGHTS_BYTES {
        return Err(format_err(
            path,
            format!("{len} bytes is larger than the {MAX_WEIGHTS_BYTES}-byte limit"),
        ));
    }
    std::fs::read(path).map_err(|e| io_err(path, e))
}

/// Module paths and shapes of every float parameter, in module order.
pub fn parameter_shapes<M: Module>(model: &M) -> Vec<(String, Vec<usize>)> {
    struct Shapes {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>)>,
    }
    impl ModuleVisitor for Shapes {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out
                .push((self.path.join("."), param.lazy_shape().dims::<D>().to_vec()));
        }
    }
    let mut v = Shapes {
        path: vec![],
        out: vec![],
    };
    model.visit(&mut v);
    v.out
}

/// Module path → (shape, values) of every float parameter.
pub fn parameter_values<M: Module>(model: &M) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    struct Values {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>, Vec<f32>)>,
    }
    impl ModuleVisitor for Values {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let shape = t.dims().to_vec();
            let values = t
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("float parameter data");
            self.out.push((self.path.join("."), shape, values));
        }
    }
    let mut v = Values {
        path: vec![],
        out: vec![],
    };
    model.visit(&mut v);
    v.out
}

/// Older diffusers checkpoints name the attention projections `query`, `key`, `value`,
/// `proj_attn`; current ones `to_q`, `to_k`, `to_v`, `to_out.0`.
fn legacy_name(name: &str) -> Option<String> {
    const RENAMES: [(&str, &str); 4] = [
        (".to_q.", ".query."),
        (".to_k.", ".key."),
        (".to_v.", ".value."),
        (".to_out.0.", ".proj_attn."),
    ];
    RENAMES
        .iter()
        .find(|(new, _)| name.contains(new))
        .map(|(new, old)| name.replacen(new, old, 1))
}

fn tensor_to_f32(
    view: &TensorView<'_>,
    name: &str,
    path: &Path,
) -> Result<Vec<f32>, CheckpointError> {
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        other => {
            return Err(format_err(
                path,
                format!("tensor `{name}` has dtype {other:?}; expected a float type"),
            ));
        }
    };
    Ok(values)
}

/// Copies the file's tensors into `model`, checking names and shapes first.
pub fn apply_weights<M: Module>(
    model: M,
    file: &SafeTensors<'_>,
    path: &Path,
    device: &Device,
) -> Result<M, CheckpointError> {
    let expected = parameter_shapes(&model);
    let available: HashMap<String, TensorView<'_>> = file.tensors().into_iter().collect();
    let mut values: HashMap<String, Vec<f32>> = HashMap::new();
    let mut used = std::collections::HashSet::new();
    for (name, shape) in &expected {
        let (found_name, view) = match available.get(name) {
            Some(v) => (name.clone(), v),
            None => match legacy_name(name).and_then(|old| available.get(&old).map(|v| (old, v))) {
                Some(found) => found,
                None => {
                    return Err(CheckpointError::Missing {
                        path: path.to_path_buf(),
                        name: name.clone(),
                    });
                }
            },
        };
        if view.shape() != shape.as_slice() {
            return Err(CheckpointError::ShapeMismatch {
                path: path.to_path_buf(),
                name: found_name,
                found: view.shape().to_vec(),
                expected: shape.clone(),
            });
        }
        values.insert(name.clone(), tensor_to_f32(view, &found_name, path)?);
        used.insert(found_name);
    }
    let mut leftovers: Vec<&String> = available.keys().filter(|k| !used.contains(*k)).collect();
    leftovers.sort();
    if let Some(first) = leftovers.first() {
        return Err(CheckpointError::Unexpected {
            path: path.to_path_buf(),
            count: leftovers.len(),
            example: (*first).clone(),
        });
    }
    Ok(set_parameters(model, values, device))
}

/// Replaces every float parameter whose module path is a key of `values`.
pub fn set_parameters<M: Module>(
    model: M,
    values: HashMap<String, Vec<f32>>,
    device: &Device,
) -> M {
    struct Setter<'a> {
        path: Vec<String>,
        values: HashMap<String, Vec<f32>>,
        device: &'a Device,
    }
    impl ModuleMapper for Setter<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(values) = self.values.remove(&self.path.join(".")) else {
                return param;
            };
            let shape: [usize; D] = param.lazy_shape().dims::<D>();
            let id: ParamId = param.id;
            let tensor = Tensor::from_data(TensorData::new(values, shape), self.device);
            param.transform_for_load(tensor, id)
        }
    }
    model.map(&mut Setter {
        path: vec![],
        values,
        device,
    })
}

/// What Lethe records about how a checkpoint came to be.
#[derive(Debug, Clone, Default)]
pub struct Provenance(pub BTreeMap<String, String>);

impl Provenance {
    pub fn new(created_by: &str) -> Self {
        let mut map = BTreeMap::new();
        map.insert("format".into(), "pt".into());
        map.insert("lethe_version".into(), env!("CARGO_PKG_VERSION").into());
        map.insert("lethe_created_by".into(), created_by.into());
        Self(map)
    }

    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.0.insert(key.into(), value.to_string());
        self
    }
}

/// Serialises the weights with provenance into safetensors bytes.
pub fn weights_bytes<M: Module>(model: &M, provenance: &Provenance) -> Result<Vec<u8>, String> {
    let params = parameter_values(model);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .into_iter()
        .map(|(name, shape, values)| {
            (
                name,
                shape,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(|e| e.to_string())?,
            ))
        })
        .collect::<Result<_, String>>()?;
    let metadata: HashMap<String, String> = provenance.0.clone().into_iter().collect();
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

/// Writes a complete checkpoint into `dir` (created if needed), each file atomically.
pub fn save(
    dir: &Path,
    model: &UNet,
    config: &UNetConfig,
    scheduler: &SchedulerConfig,
    provenance: &Provenance,
) -> Result<(), CheckpointError> {
    let weights =
        weights_bytes(model, provenance).map_err(|e| format_err(&dir.join(UNET_WEIGHTS), e))?;
    let mut unet_config = serde_json::to_value(config).expect("config serialises");
    unet_config["_diffusers_version"] = "0.30.0".into();
    let files: [(&str, Vec<u8>); 3] = [
        (
            UNET_CONFIG,
            serde_json::to_vec_pretty(&unet_config).expect("json"),
        ),
        (
            SCHEDULER_CONFIG,
            serde_json::to_vec_pretty(scheduler).expect("json"),
        ),
        (UNET_WEIGHTS, weights),
    ];
    for (rel, bytes) in files {
        let path = dir.join(rel);
        atomic_write(&path, &bytes).map_err(|e| io_err(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_alone_gives_the_tensor_table_and_a_cut_file_is_refused() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-model");
        let weights = demo.join(UNET_WEIGHTS);
        let bytes = std::fs::read(&weights).unwrap();
        let (_, full) = SafeTensors::read_metadata(&bytes).unwrap();
        let header = read_header(&weights).unwrap();
        assert_eq!(header.tensors().len(), full.tensors().len());
        assert_eq!(header.metadata(), full.metadata());
        assert_eq!(header.data_len(), full.data_len());

        let tmp = tempfile::tempdir().unwrap();
        let cut = tmp.path().join("cut.safetensors");
        let refusal = |content: &[u8]| {
            std::fs::write(&cut, content).unwrap();
            read_header(&cut).unwrap_err().to_string()
        };
        let short = refusal(&bytes[..bytes.len() - 1]);
        assert!(
            short.contains("cut.safetensors") && short.contains("but the file holds"),
            "{short}"
        );
        assert!(refusal(&bytes[..4]).contains("too short"));
        let mut lying = bytes.clone();
        lying[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(refusal(&lying).contains("a header of 18446744073709551615 bytes"));
    }
}
