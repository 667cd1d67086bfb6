//! The FID Inception-v3 as pytorch-fid computes it: torchvision's Inception3 with pytorch-fid's
//! `FIDInceptionA/C/E_1/E_2` blocks (TensorFlow's average pools that ignore padding, and the
//! max pool in the last block), its 2048-d pool3 features, the bilinear resize to 299×299
//! (`align_corners = false`) and the scaling from [0, 1] to [-1, 1].
//!
//! It reads the weights file users already have (`pt_inception-2015-12-05-6726825d.pth`) in
//! either `torch.save` container — the zip of PyTorch ≥ 1.6 or the legacy pickle stream —
//! through Burn's `pytorch-reader`, which parses the pickle without executing it; or the same
//! tensors as safetensors. Each BatchNorm (eval mode, ε = 0.001) is folded into the
//! convolution before it, in f64, when the weights are loaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d, conv2d, interpolate, max_pool2d};
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};

/// Length of a pool3 feature vector.
pub const INCEPTION_DIM: usize = 2048;
/// The side every image is resized to before the network sees it.
pub const INCEPTION_SIZE: usize = 299;
/// torchvision's `BasicConv2d` BatchNorm epsilon.
const BN_EPS: f64 = 0.001;
/// Images per forward pass: about 0.5 GB of activations at 299×299.
const BATCH: usize = 16;

/// Named float tensors of a weights file: shape and values.
pub type TensorMap = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// A convolution with its BatchNorm folded in, followed by ReLU (torchvision's BasicConv2d).
struct ConvBnRelu {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: [usize; 2],
}

impl ConvBnRelu {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([self.stride; 2], self.padding, [1, 1], 1);
        relu(conv2d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            options,
        ))
    }
}

/// How each block's pooling branch pools (pytorch-fid's patches to torchvision's blocks).
#[derive(Clone, Copy)]
enum BranchPool {
    /// 3×3, stride 1, padding 1, padded zeros not counted (TensorFlow's average pool).
    AverageIgnoringPad,
    /// 3×3, stride 1, padding 1 max pool (`FIDInceptionE_2`).
    Max,
}

impl BranchPool {
    fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::AverageIgnoringPad => avg_pool2d(
                x,
                AvgPoolOptions::new([3, 3])
                    .with_stride([1, 1])
                    .with_padding([1, 1])
                    .with_count_include_pad(false),
            ),
            Self::Max => max_pool2d(
                x,
                MaxPoolOptions::new([3, 3])
                    .with_stride([1, 1])
                    .with_padding([1, 1]),
            ),
        }
    }
}

/// 3×3 max pool with stride 2, no padding (between stages and in the reduction blocks).
fn reduce(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([2, 2]))
}

/// `FIDInceptionA`: 1×1, 5×5, double 3×3 and pooled branches.
struct BlockA {
    b1x1: ConvBnRelu,
    b5x5: [ConvBnRelu; 2],
    b3x3dbl: [ConvBnRelu; 3],
    pool: ConvBnRelu,
}

/// torchvision's `InceptionB` (grid reduction 35 → 17).
struct BlockB {
    b3x3: ConvBnRelu,
    b3x3dbl: [ConvBnRelu; 3],
}

/// `FIDInceptionC`: factorised 7×7 branches.
struct BlockC {
    b1x1: ConvBnRelu,
    b7x7: [ConvBnRelu; 3],
    b7x7dbl: [ConvBnRelu; 5],
    pool: ConvBnRelu,
}

/// torchvision's `InceptionD` (grid reduction 17 → 8).
struct BlockD {
    b3x3: [ConvBnRelu; 2],
    b7x7x3: [ConvBnRelu; 4],
}

/// `FIDInceptionE_1` / `FIDInceptionE_2`: the expanded-filter-bank blocks.
struct BlockE {
    b1x1: ConvBnRelu,
    b3x3_1: ConvBnRelu,
    b3x3_2: [ConvBnRelu; 2],
    b3x3dbl: [ConvBnRelu; 2],
    b3x3dbl_3: [ConvBnRelu; 2],
    pool: ConvBnRelu,
    pool_kind: BranchPool,
}

fn chain<const N: usize>(convs: &[ConvBnRelu; N], x: Tensor<4>) -> Tensor<4> {
    convs.iter().fold(x, |h, c| c.forward(h))
}

impl BlockA {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pooled = BranchPool::AverageIgnoringPad.apply(x.clone());
        Tensor::cat(
            vec![
                self.b1x1.forward(x.clone()),
                chain(&self.b5x5, x.clone()),
                chain(&self.b3x3dbl, x),
                self.pool.forward(pooled),
            ],
            1,
        )
    }
}

impl BlockB {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        Tensor::cat(
            vec![
                self.b3x3.forward(x.clone()),
                chain(&self.b3x3dbl, x.clone()),
                reduce(x),
            ],
            1,
        )
    }
}

impl BlockC {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pooled = BranchPool::AverageIgnoringPad.apply(x.clone());
        Tensor::cat(
            vec![
                self.b1x1.forward(x.clone()),
                chain(&self.b7x7, x.clone()),
                chain(&self.b7x7dbl, x),
                self.pool.forward(pooled),
            ],
            1,
        )
    }
}

impl BlockD {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        Tensor::cat(
            vec![
                chain(&self.b3x3, x.clone()),
                chain(&self.b7x7x3, x.clone()),
                reduce(x),
            ],
            1,
        )
    }
}

impl BlockE {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let split = |pair: &[ConvBnRelu; 2], h: Tensor<4>| {
            Tensor::cat(vec![pair[0].forward(h.clone()), pair[1].forward(h)], 1)
        };
        let b3x3 = split(&self.b3x3_2, self.b3x3_1.forward(x.clone()));
        let b3x3dbl = split(&self.b3x3dbl_3, chain(&self.b3x3dbl, x.clone()));
        let pooled = self.pool_kind.apply(x.clone());
        Tensor::cat(
            vec![
                self.b1x1.forward(x),
                b3x3,
                b3x3dbl,
                self.pool.forward(pooled),
            ],
            1,
        )
    }
}

/// The FID Inception-v3 up to its pool3 features.
pub struct Inception {
    stem: [ConvBnRelu; 5],
    mixed_5: [BlockA; 3],
    mixed_6a: BlockB,
    mixed_6: [BlockC; 4],
    mixed_7a: BlockD,
    mixed_7: [BlockE; 2],
}

impl Inception {
    /// `[B, 3, H, W]` in [0, 1] → `[B, 2048]` pool3 features, as pytorch-fid's
    /// `InceptionV3([3])` (resize to 299×299, scale to [-1, 1]).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let [_, _, h, w] = x.dims();
        let x = if (h, w) == (INCEPTION_SIZE, INCEPTION_SIZE) {
            x
        } else {
            interpolate(
                x,
                InterpolateOptions::new(InterpolateMode::Bilinear)
                    .with_align_corners(false)
                    .with_output_size([INCEPTION_SIZE; 2]),
            )
        };
        let x = x * 2.0 - 1.0;
        let [c1a, c2a, c2b, c3b, c4a] = &self.stem;
        let x = reduce(c2b.forward(c2a.forward(c1a.forward(x))));
        let x = reduce(c4a.forward(c3b.forward(x)));
        let x = self.mixed_5.iter().fold(x, |h, b| b.forward(h));
        let x = self.mixed_6a.forward(x);
        let x = self.mixed_6.iter().fold(x, |h, b| b.forward(h));
        let x = self.mixed_7a.forward(x);
        let x = self.mixed_7.iter().fold(x, |h, b| b.forward(h));
        let [b, c, _, _] = x.dims();
        adaptive_avg_pool2d(x, [1, 1]).reshape([b, c])
    }

    /// Pool3 features (`[N × 2048]`, row after row) of images with values in [0, 1] (CHW,
    /// `shape` = `[c, h, w]`); one channel is repeated to three, as pytorch-fid's
    /// `convert('RGB')` does.
    pub fn features(
        &self,
        images: &[Vec<f32>],
        shape: [usize; 3],
        device: &Device,
    ) -> Result<Vec<f32>, String> {
        let [c, h, w] = shape;
        if c != 1 && c != 3 {
            return Err(format!(
                "the Inception network takes 1- or 3-channel images; these have {c} channels"
            ));
        }
        let mut features = Vec::with_capacity(images.len() * INCEPTION_DIM);
        for chunk in images.chunks(BATCH) {
            let values: Vec<f32> = chunk.iter().flatten().copied().collect();
            let x = Tensor::<4>::from_data(TensorData::new(values, [chunk.len(), c, h, w]), device);
            let x = if c == 1 { x.repeat_dim(1, 3) } else { x };
            let f = self.forward(x).into_data().convert::<f32>();
            features.extend(f.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?);
        }
        Ok(features)
    }

    /// Builds the network from torchvision/pytorch-fid tensor names (`Mixed_5b.branch1x1.conv
    /// .weight`, `….bn.running_var`, …). Every tensor the pool3 features need must be present
    /// with its shape; the classifier head (`fc.*`), `AuxLogits.*` and `num_batches_tracked`
    /// may be present and are ignored; anything else is refused (a different network).
    pub fn from_tensors(tensors: &TensorMap, path: &Path, device: &Device) -> Result<Self, String> {
        let mut loader = Loader {
            tensors,
            path,
            device,
            used: Default::default(),
            recorded: None,
        };
        let network = Self::build(&mut loader)?;
        loader.refuse_leftovers()?;
        Ok(network)
    }

    fn build(l: &mut Loader<'_>) -> Result<Self, String> {
        Ok(Self {
            stem: [
                l.conv("Conv2d_1a_3x3", 3, 32, [3, 3], 2, [0, 0])?,
                l.conv("Conv2d_2a_3x3", 32, 32, [3, 3], 1, [0, 0])?,
                l.conv("Conv2d_2b_3x3", 32, 64, [3, 3], 1, [1, 1])?,
                l.conv("Conv2d_3b_1x1", 64, 80, [1, 1], 1, [0, 0])?,
                l.conv("Conv2d_4a_3x3", 80, 192, [3, 3], 1, [0, 0])?,
            ],
            mixed_5: [
                block_a(l, "Mixed_5b", 192, 32)?,
                block_a(l, "Mixed_5c", 256, 64)?,
                block_a(l, "Mixed_5d", 288, 64)?,
            ],
            mixed_6a: block_b(l, "Mixed_6a", 288)?,
            mixed_6: [
                block_c(l, "Mixed_6b", 768, 128)?,
                block_c(l, "Mixed_6c", 768, 160)?,
                block_c(l, "Mixed_6d", 768, 160)?,
                block_c(l, "Mixed_6e", 768, 192)?,
            ],
            mixed_7a: block_d(l, "Mixed_7a", 768)?,
            mixed_7: [
                block_e(l, "Mixed_7b", 1280, BranchPool::AverageIgnoringPad)?,
                block_e(l, "Mixed_7c", 2048, BranchPool::Max)?,
            ],
        })
    }

    /// Every tensor name and shape the network reads, in torchvision's naming (what a
    /// weights file must hold): built once with zeros in place of weights.
    pub fn expected_tensors() -> Vec<(String, Vec<usize>)> {
        let device = crate::backend::device(crate::backend::BackendChoice::Cpu)
            .expect("the CPU backend is always built");
        let mut loader = Loader {
            tensors: &HashMap::new(),
            path: Path::new(""),
            device: &device,
            used: Default::default(),
            recorded: Some(vec![]),
        };
        Self::build(&mut loader).expect("recording never fails");
        loader.recorded.unwrap_or_default()
    }
}

fn block_a(l: &mut Loader<'_>, name: &str, c_in: usize, pool: usize) -> Result<BlockA, String> {
    let n = |s: &str| format!("{name}.{s}");
    Ok(BlockA {
        b1x1: l.conv(&n("branch1x1"), c_in, 64, [1, 1], 1, [0, 0])?,
        b5x5: [
            l.conv(&n("branch5x5_1"), c_in, 48, [1, 1], 1, [0, 0])?,
            l.conv(&n("branch5x5_2"), 48, 64, [5, 5], 1, [2, 2])?,
        ],
        b3x3dbl: [
            l.conv(&n("branch3x3dbl_1"), c_in, 64, [1, 1], 1, [0, 0])?,
            l.conv(&n("branch3x3dbl_2"), 64, 96, [3, 3], 1, [1, 1])?,
            l.conv(&n("branch3x3dbl_3"), 96, 96, [3, 3], 1, [1, 1])?,
        ],
        pool: l.conv(&n("branch_pool"), c_in, pool, [1, 1], 1, [0, 0])?,
    })
}

fn block_b(l: &mut Loader<'_>, name: &str, c_in: usize) -> Result<BlockB, String> {
    let n = |s: &str| format!("{name}.{s}");
    Ok(BlockB {
        b3x3: l.conv(&n("branch3x3"), c_in, 384, [3, 3], 2, [0, 0])?,
        b3x3dbl: [
            l.conv(&n("branch3x3dbl_1"), c_in, 64, [1, 1], 1, [0, 0])?,
            l.conv(&n("branch3x3dbl_2"), 64, 96, [3, 3], 1, [1, 1])?,
            l.conv(&n("branch3x3dbl_3"), 96, 96, [3, 3], 2, [0, 0])?,
        ],
    })
}

fn block_c(l: &mut Loader<'_>, name: &str, c_in: usize, c7: usize) -> Result<BlockC, String> {
    let n = |s: &str| format!("{name}.{s}");
    let (row, col) = (([1, 7], [0, 3]), ([7, 1], [3, 0]));
    Ok(BlockC {
        b1x1: l.conv(&n("branch1x1"), c_in, 192, [1, 1], 1, [0, 0])?,
        b7x7: [
            l.conv(&n("branch7x7_1"), c_in, c7, [1, 1], 1, [0, 0])?,
            l.conv(&n("branch7x7_2"), c7, c7, row.0, 1, row.1)?,
            l.conv(&n("branch7x7_3"), c7, 192, col.0, 1, col.1)?,
        ],
        b7x7dbl: [
            l.conv(&n("branch7x7dbl_1"), c_in, c7, [1, 1], 1, [0, 0])?,
            l.conv(&n("branch7x7dbl_2"), c7, c7, col.0, 1, col.1)?,
            l.conv(&n("branch7x7dbl_3"), c7, c7, row.0, 1, row.1)?,
            l.conv(&n("branch7x7dbl_4"), c7, c7, col.0, 1, col.1)?,
            l.conv(&n("branch7x7dbl_5"), c7, 192, row.0, 1, row.1)?,
        ],
        pool: l.conv(&n("branch_pool"), c_in, 192, [1, 1], 1, [0, 0])?,
    })
}

fn block_d(l: &mut Loader<'_>, name: &str, c_in: usize) -> Result<BlockD, String> {
    let n = |s: &str| format!("{name}.{s}");
    Ok(BlockD {
        b3x3: [
            l.conv(&n("branch3x3_1"), c_in, 192, [1, 1], 1, [0, 0])?,
            l.conv(&n("branch3x3_2"), 192, 320, [3, 3], 2, [0, 0])?,
        ],
        b7x7x3: [
            l.conv(&n("branch7x7x3_1"), c_in, 192, [1, 1], 1, [0, 0])?,
            l.conv(&n("branch7x7x3_2"), 192, 192, [1, 7], 1, [0, 3])?,
            l.conv(&n("branch7x7x3_3"), 192, 192, [7, 1], 1, [3, 0])?,
            l.conv(&n("branch7x7x3_4"), 192, 192, [3, 3], 2, [0, 0])?,
        ],
    })
}

fn block_e(
    l: &mut Loader<'_>,
    name: &str,
    c_in: usize,
    pool_kind: BranchPool,
) -> Result<BlockE, String> {
    let n = |s: &str| format!("{name}.{s}");
    let (row, col) = (([1, 3], [0, 1]), ([3, 1], [1, 0]));
    Ok(BlockE {
        b1x1: l.conv(&n("branch1x1"), c_in, 320, [1, 1], 1, [0, 0])?,
        b3x3_1: l.conv(&n("branch3x3_1"), c_in, 384, [1, 1], 1, [0, 0])?,
        b3x3_2: [
            l.conv(&n("branch3x3_2a"), 384, 384, row.0, 1, row.1)?,
            l.conv(&n("branch3x3_2b"), 384, 384, col.0, 1, col.1)?,
        ],
        b3x3dbl: [
            l.conv(&n("branch3x3dbl_1"), c_in, 448, [1, 1], 1, [0, 0])?,
            l.conv(&n("branch3x3dbl_2"), 448, 384, [3, 3], 1, [1, 1])?,
        ],
        b3x3dbl_3: [
            l.conv(&n("branch3x3dbl_3a"), 384, 384, row.0, 1, row.1)?,
            l.conv(&n("branch3x3dbl_3b"), 384, 384, col.0, 1, col.1)?,
        ],
        pool: l.conv(&n("branch_pool"), c_in, 192, [1, 1], 1, [0, 0])?,
        pool_kind,
    })
}

/// Takes named tensors out of a weights file, checking each shape.
struct Loader<'a> {
    tensors: &'a TensorMap,
    path: &'a Path,
    device: &'a Device,
    used: std::collections::HashSet<String>,
    /// When set, `take` records each name and shape and hands back zeros (no file).
    recorded: Option<Vec<(String, Vec<usize>)>>,
}

impl Loader<'_> {
    /// `NAME.conv.weight` and `NAME.bn.{weight,bias,running_mean,running_var}`, folded:
    /// `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)` per output channel (in f64).
    fn conv(
        &mut self,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: [usize; 2],
    ) -> Result<ConvBnRelu, String> {
        let weight = self.take(
            &format!("{name}.conv.weight"),
            &[c_out, c_in, kernel[0], kernel[1]],
        )?;
        let gamma = self.take(&format!("{name}.bn.weight"), &[c_out])?;
        let beta = self.take(&format!("{name}.bn.bias"), &[c_out])?;
        let mean = self.take(&format!("{name}.bn.running_mean"), &[c_out])?;
        let var = self.take(&format!("{name}.bn.running_var"), &[c_out])?;
        let per_out = c_in * kernel[0] * kernel[1];
        let mut folded = Vec::with_capacity(weight.len());
        let mut bias = Vec::with_capacity(c_out);
        for o in 0..c_out {
            let scale = f64::from(gamma[o]) / (f64::from(var[o]) + BN_EPS).sqrt();
            let row = &weight[o * per_out..(o + 1) * per_out];
            folded.extend(row.iter().map(|&w| (f64::from(w) * scale) as f32));
            bias.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
        }
        let shape = [c_out, c_in, kernel[0], kernel[1]];
        Ok(ConvBnRelu {
            weight: Tensor::from_data(TensorData::new(folded, shape), self.device),
            bias: Tensor::from_data(TensorData::new(bias, [c_out]), self.device),
            stride,
            padding,
        })
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        if let Some(recorded) = &mut self.recorded {
            recorded.push((name.to_string(), shape.to_vec()));
            return Ok(vec![0.0; shape.iter().product()]);
        }
        let file = self.path.display();
        let (found, values) = self.tensors.get(name).ok_or_else(|| {
            format!("{file}: tensor `{name}` of the FID Inception-v3 is missing (not the pytorch-fid Inception weights?)")
        })?;
        if found != shape {
            return Err(format!(
                "{file}: tensor `{name}` has shape {found:?}; the FID Inception-v3 needs {shape:?}"
            ));
        }
        self.used.insert(name.to_string());
        Ok(values.clone())
    }

    fn refuse_leftovers(&self) -> Result<(), String> {
        let ignorable = |n: &str| {
            n.starts_with("fc.")
                || n.starts_with("AuxLogits.")
                || n.ends_with("num_batches_tracked")
        };
        let mut extra: Vec<&String> = self
            .tensors
            .keys()
            .filter(|n| !self.used.contains(*n) && !ignorable(n))
            .collect();
        extra.sort();
        match extra.first() {
            None => Ok(()),
            Some(first) => Err(format!(
                "{}: holds {} tensor(s) the FID Inception-v3 does not have, e.g. `{first}` (a different network?)",
                self.path.display(),
                extra.len()
            )),
        }
    }
}

/// The feature network and the file it came from.
pub struct LoadedInception {
    pub network: Inception,
    pub path: PathBuf,
    /// SHA-256 of the weights file: names the exact network in metric provenance.
    pub weights_sha256: String,
}

impl LoadedInception {
    pub fn load(path: &Path, device: &Device) -> Result<Self, String> {
        let bytes = crate::diffusion::checkpoint::read_bounded(path).map_err(|e| e.to_string())?;
        let weights_sha256 = crate::util::sha256_hex(&bytes);
        let tensors = read_tensors(path, &bytes)?;
        Ok(Self {
            network: Inception::from_tensors(&tensors, path, device)?,
            path: path.to_path_buf(),
            weights_sha256,
        })
    }

    /// How its features are named in provenance, e.g. `inception-v3-fid@6726825d`.
    pub fn feature_label(&self) -> String {
        format!("inception-v3-fid@{}", &self.weights_sha256[..8])
    }
}

/// Every float tensor of a weights file: safetensors (sniffed from its header), else a
/// `torch.save` file (zip or legacy), read without executing its pickle. Integer tensors
/// (`num_batches_tracked`) are skipped.
pub fn read_tensors(path: &Path, bytes: &[u8]) -> Result<TensorMap, String> {
    if looks_like_safetensors(bytes) {
        return read_safetensors(path, bytes);
    }
    read_torch(path)
}

fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 8 && bytes[8] == b'{'
}

fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<TensorMap, String> {
    use safetensors::Dtype;
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("{}: not a valid safetensors file: {e}", path.display()))?;
    let mut map = TensorMap::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => continue,
        };
        map.insert(name, (view.shape().to_vec(), values));
    }
    Ok(map)
}

fn read_torch(path: &Path) -> Result<TensorMap, String> {
    use pytorch_reader::DType;
    let fail = |reason: String| format!("{}: {reason}", path.display());
    let reader = pytorch_reader::PytorchReader::new(path).map_err(|e| {
        fail(format!(
            "neither safetensors nor a readable torch.save file (zip or legacy): {e}"
        ))
    })?;
    let mut map = TensorMap::new();
    for (name, tensor) in reader.tensors() {
        let decode = |bytes: Vec<u8>| -> Vec<f32> {
            match tensor.dtype() {
                DType::F32 => bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                DType::F64 => bytes
                    .chunks_exact(8)
                    .map(|b| f64::from_ne_bytes(b.try_into().expect("8 bytes")) as f32)
                    .collect(),
                DType::F16 => bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                DType::BF16 => bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_ne_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                _ => vec![],
            }
        };
        let is_float = matches!(
            tensor.dtype(),
            DType::F32 | DType::F64 | DType::F16 | DType::BF16
        );
        if !is_float {
            continue;
        }
        let bytes = tensor.read().map_err(|e| fail(e.to_string()))?;
        map.insert(name.clone(), (tensor.shape().to_vec(), decode(bytes)));
    }
    Ok(map)
}
