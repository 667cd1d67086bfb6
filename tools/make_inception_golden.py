#!/usr/bin/env python3
"""Golden fixture for Lethe's FID Inception-v3 (tests/numerics/golden_inception.rs, issue #26).

pytorch-fid's own model classes (`pytorch_fid.inception.InceptionV3`, which builds
`fid_inception_v3()`: torchvision's Inception3 with FIDInceptionA/C/E_1/E_2) with *synthetic*
weights in place of the real `pt_inception-2015-12-05-6726825d.pth` (which cannot be
committed: 91 MB, and not ours to redistribute). pytorch-fid loads weights through
`load_state_dict_from_url`; this script hands it the synthetic state dict instead, so every
other line that runs is pytorch-fid's.

The weights are not stored either (27M values): every tensor is a function of its name, which
Lethe's test reproduces bit for bit (`synthetic_value` below, with v from
tools/synthetic_weights.py; `tests/numerics/golden_inception.rs` has the same rule in Rust):

    conv weight = v * sqrt(6 / fan_in)                 (He-uniform: activations stay O(1))
    bn weight   = 1 + 0.2 v,  bn bias = 0.1 v,  running_mean = 0.1 v,  running_var = 1 + 0.5 v
    fc.*        = 0.01 v (unused by the pool3 features; present so the file is complete)

all in float32 with the same operation order on both sides, so the two tensors are identical.

Writes tests/fixtures/inception/:
    a/*.png, b/*.png       two small image folders (32×32; b holds two grayscale images, which
                           pytorch-fid's `convert('RGB')` repeats to three channels)
    features.npy           pool3 features (N×2048, float32) of a's then b's images, from
                           pytorch-fid's `get_activations` (batch 4, CPU, float32)
    expected.json          `calculate_fid_given_paths([a, b], …, dims=2048)`, the image order, and
                           clean-fid's `kernel_distance` (KID) of a's against b's features
                           (equal sets of 6 rows: every random subset is the whole set, so the
                           value is deterministic)
    tiny_zip.pth, tiny_legacy.pth
                           three synthetic tensors (f32, f64, int64) saved by `torch.save` in
                           the zip format (PyTorch ≥ 1.6) and the legacy one, so Lethe's
                           reader is held to both containers on a small file
With `--write-weights DIR` it also writes the full synthetic state dict to
DIR/inception_zip.pth, DIR/inception_legacy.pth and DIR/inception.safetensors (91 MB each;
not committed) for checking `lethe fid --feature-net inception:…` against
`python -m pytorch_fid` by hand.

    python3 -m venv .venv && .venv/bin/pip install torch torchvision pytorch-fid clean-fid scipy numpy
    .venv/bin/python tools/make_inception_golden.py [--write-weights /tmp/inception]
"""

import argparse
import json
import os

import numpy as np
import torch
from PIL import Image

import pytorch_fid.fid_score as fid_score
import pytorch_fid.inception as fid_inception
from synthetic_weights import unit_tensor

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "inception")
def synthetic_value(name, shape):
    v = unit_tensor(name, shape)
    f = np.float32
    if name.endswith("running_var"):
        return f(1.0) + f(0.5) * v
    if name.endswith("running_mean"):
        return f(0.1) * v
    if ".bn.weight" in name:
        return f(1.0) + f(0.2) * v
    if ".bn.bias" in name:
        return f(0.1) * v
    if name.endswith("conv.weight"):
        fan_in = int(np.prod(shape[1:]))
        return f(np.sqrt(6.0 / fan_in)) * v
    return f(0.01) * v


def synthetic_state_dict():
    shapes = fid_inception_structure().state_dict()
    state = {}
    for name, tensor in shapes.items():
        if tensor.dtype == torch.int64:  # num_batches_tracked: unused in eval mode
            state[name] = torch.tensor(0, dtype=torch.int64)
        else:
            state[name] = torch.from_numpy(synthetic_value(name, tuple(tensor.shape)))
    return state


def fid_inception_structure():
    """pytorch-fid's fid_inception_v3() without its download (weights left at init)."""
    saved = fid_inception.load_state_dict_from_url
    fid_inception.load_state_dict_from_url = lambda *a, **k: None
    original_load = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = lambda self, *a, **k: None
    try:
        return fid_inception.fid_inception_v3()
    finally:
        fid_inception.load_state_dict_from_url = saved
        torch.nn.Module.load_state_dict = original_load


def install_synthetic_weights(state):
    """pytorch-fid fetches its weights with load_state_dict_from_url; hand it ours."""
    fid_inception.load_state_dict_from_url = lambda *a, **k: state


def write_images(rng):
    """Smooth random images (a few Gaussian blobs) so features vary between images."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    paths = {"a": [], "b": []}
    for folder, count, gray in (("a", 6, 0), ("b", 6, 2)):
        os.makedirs(os.path.join(OUT, folder), exist_ok=True)
        for i in range(count):
            img = np.zeros((32, 32, 3))
            for _ in range(4):
                cy, cx = rng.uniform(0, 32, 2)
                width = rng.uniform(3, 10)
                colour = rng.uniform(0, 1, 3)
                blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
                img += blob[..., None] * colour
            img = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
            pixels = (img * 255).round().astype(np.uint8)
            name = os.path.join(folder, f"{i:02d}.png")
            if i < gray:
                Image.fromarray(pixels.mean(axis=2).round().astype(np.uint8), "L").save(
                    os.path.join(OUT, name)
                )
            else:
                Image.fromarray(pixels, "RGB").save(os.path.join(OUT, name))
            paths[folder].append(name)
    return paths


def write_tiny_checkpoints():
    tensors = {
        "block.conv.weight": torch.from_numpy(synthetic_value("block.conv.weight", (4, 3, 3, 3))),
        "block.bn.running_var": torch.from_numpy(
            synthetic_value("block.bn.running_var", (4,))
        ).double(),
        "block.bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }
    torch.save(tensors, os.path.join(OUT, "tiny_zip.pth"))
    torch.save(tensors, os.path.join(OUT, "tiny_legacy.pth"), _use_new_zipfile_serialization=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--write-weights", metavar="DIR")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    os.makedirs(OUT, exist_ok=True)
    state = synthetic_state_dict()
    install_synthetic_weights(state)

    paths = write_images(np.random.default_rng(26))
    write_tiny_checkpoints()

    model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    files = [os.path.join(OUT, p) for p in paths["a"] + paths["b"]]
    features = fid_score.get_activations(files, model, batch_size=4, dims=2048, device="cpu")
    np.save(os.path.join(OUT, "features.npy"), features.astype(np.float32))

    fid = fid_score.calculate_fid_given_paths(
        [os.path.join(OUT, "a"), os.path.join(OUT, "b")], batch_size=4, device="cpu", dims=2048,
        num_workers=0,
    )
    from cleanfid.fid import kernel_distance

    count_a = len(paths["a"])
    kid = kernel_distance(features[:count_a].astype(np.float64), features[count_a:].astype(np.float64))
    record = {
        "fid": float(fid),
        "kid": kid,
        "kid_how": "cleanfid.fid.kernel_distance(features of a, features of b) (clean-fid "
        "0.1.35; 6 rows each, so every subset is the whole set)",
        "images": paths["a"] + paths["b"],
        "feature_dim": 2048,
        "feature_abs_max": float(np.abs(features).max()),
        "feature_mean": float(features.mean()),
        "torch": torch.__version__,
        "pytorch_fid": "0.3.0",
        "how": "pytorch_fid.fid_score.calculate_fid_given_paths([a, b], batch_size=4, "
        "device='cpu', dims=2048) with the synthetic weights (see this script)",
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(record, indent=2))

    if args.write_weights:
        from safetensors.torch import save_file

        os.makedirs(args.write_weights, exist_ok=True)
        torch.save(state, os.path.join(args.write_weights, "inception_zip.pth"))
        torch.save(
            state,
            os.path.join(args.write_weights, "inception_legacy.pth"),
            _use_new_zipfile_serialization=False,
        )
        save_file(
            {k: v for k, v in state.items() if v.dtype != torch.int64},
            os.path.join(args.write_weights, "inception.safetensors"),
        )
        print(f"wrote the full synthetic weights to {args.write_weights}")


if __name__ == "__main__":
    main()
