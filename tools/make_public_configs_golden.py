#!/usr/bin/env python3
"""Golden fixtures for the public checkpoints researchers bring (tests/numerics/golden_public.rs).

For each public UNet2DModel configuration — google/ddpm-cifar10-32, google/ddpm-celebahq-256,
google/ddpm-church-256 (the config.json each ships) and SISS's MNIST model (its
config/base_mnist.yaml: 64/128/256 channels, attention in the middle level, diffusers'
defaults otherwise, attention_head_dim 8 among them) — writes:

  full/<name>.json   the configuration as diffusers resolves it (every key) and diffusers'
                     parameter count for it, so Lethe's test builds the full model and compares
  small/<name>/config.json, io.safetensors
                     a width-reduced copy (same block types and options; small channel counts,
                     and 64×64 instead of 256×256 for the 256-px models, which keeps attention
                     at the same level, 1/16 of the input side) with synthetic weights
                     (tools/synthetic_weights.py: a function of each parameter's name, which the
                     Rust test regenerates, so no weights are stored), its inputs (x, t) and
                     diffusers' output `eps`

    .venv/bin/pip install torch diffusers
    .venv/bin/python tools/make_public_configs_golden.py
"""

import json
from pathlib import Path

import numpy as np
import torch
import diffusers
from diffusers import UNet2DModel
from safetensors.torch import save_file

from synthetic_weights import unet_value

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden" / "public"

GOOGLE_DDPM = {
    "act_fn": "silu",
    "attention_head_dim": None,
    "center_input_sample": False,
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "time_embedding_type": "positional",
}
# The config.json files of the google/ddpm-* checkpoints on the Hugging Face hub.
CONFIGS = {
    "ddpm-cifar10-32": {
        **GOOGLE_DDPM,
        "block_out_channels": [128, 256, 256, 256],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        "in_channels": 3,
        "out_channels": 3,
        "sample_size": 32,
    },
    "ddpm-celebahq-256": {
        **GOOGLE_DDPM,
        "block_out_channels": [128, 128, 256, 256, 512, 512],
        "down_block_types": ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4,
        "in_channels": 3,
        "out_channels": 3,
        "sample_size": 256,
    },
    "ddpm-church-256": {
        **GOOGLE_DDPM,
        "block_out_channels": [128, 128, 256, 256, 512, 512],
        "down_block_types": ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4,
        "in_channels": 3,
        "out_channels": 3,
        "sample_size": 256,
    },
    # SISS config/base_mnist.yaml: only these keys; diffusers' defaults for the rest.
    "siss-mnist": {
        "sample_size": 28,
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": [64, 128, 256],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    },
}
# Width-reduced copies: channels divided (group norm's 32 groups still divide them) and the
# 256-px models at 64 px.
SMALL = {
    "ddpm-cifar10-32": {"block_out_channels": [32, 64, 64, 64]},
    "ddpm-celebahq-256": {"block_out_channels": [32, 32, 64, 64, 96, 96], "sample_size": 64},
    "ddpm-church-256": {"block_out_channels": [32, 32, 64, 64, 96, 96], "sample_size": 64},
    "siss-mnist": {"block_out_channels": [32, 64, 64]},
}


def resolved_config(model):
    config = dict(model.config)
    return {k: v for k, v in config.items() if not k.startswith("_")}


def full_case(name, config):
    model = UNet2DModel(**config)
    count = sum(p.numel() for p in model.parameters())
    record = {
        "config": {"_class_name": "UNet2DModel", **resolved_config(model)},
        "parameters": count,
        "diffusers": diffusers.__version__,
    }
    (OUT / "full").mkdir(parents=True, exist_ok=True)
    with open(OUT / "full" / f"{name}.json", "w") as f:
        json.dump(record, f, indent=1, default=list)
    print(f"{name}: {count:,} parameters")


def small_case(name, config):
    model = UNet2DModel(**{**config, **SMALL[name]}).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            p.copy_(torch.from_numpy(unet_value(pname, tuple(p.shape))))
    d = OUT / "small" / name
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "config.json", "w") as f:
        json.dump({"_class_name": "UNet2DModel", **resolved_config(model)}, f, indent=1, default=list)
    g = torch.Generator().manual_seed(1)
    c, s = model.config.in_channels, model.config.sample_size
    x = torch.randn(2, c, s, s, generator=g)
    t = torch.tensor([3.0, 640.0])
    with torch.no_grad():
        eps = model(x, t).sample
    save_file({"x": x, "t": t, "eps": eps.contiguous()}, d / "io.safetensors")
    print(f"{name} (small): eps std {eps.std().item():.3f}, max |eps| {eps.abs().max().item():.3f}")


def main():
    torch.set_grad_enabled(False)
    for name, config in CONFIGS.items():
        full_case(name, config)
        small_case(name, config)


if __name__ == "__main__":
    main()
