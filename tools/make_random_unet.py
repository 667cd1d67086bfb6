#!/usr/bin/env python3
"""A random-weight diffusers checkpoint of a public UNet2DModel architecture, for benchmarks
(`lethe bench --checkpoint DIR`, `bench/pytorch_reference.py --checkpoint DIR`): the timing of
a model does not depend on its weights, and the hub is not reachable from here. Writes the
diffusers pipeline layout (`DIR/unet/config.json`, `DIR/unet/diffusion_pytorch_model.safetensors`,
`DIR/scheduler/scheduler_config.json`) with diffusers' own `save_pretrained`, so it also shows
that Lethe reads what diffusers writes. Not committed (≈ 143 MB for cifar10).

    /tmp/venv/bin/python tools/make_random_unet.py --arch cifar10 --out /tmp/ddpm-cifar10-32-random
"""
import argparse
import sys
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

# google/ddpm-cifar10-32's config, from the one place the benchmark keeps it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from pytorch_reference import CIFAR10  # noqa: E402

# google/ddpm-celebahq-256's unet/config.json (113.7M parameters, attention at 16×16).
CELEBAHQ256 = dict(
    sample_size=256, in_channels=3, out_channels=3, block_out_channels=(128, 128, 256, 256, 512, 512),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_eps=1e-6, norm_num_groups=32, attention_head_dim=None,
)

ARCHS = {"cifar10": CIFAR10, "celebahq256": CELEBAHQ256}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(ARCHS), default="cifar10")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-dim", type=int, default=None,
                    help="attention_head_dim (default: the checkpoint's own, None = one head; 8 is diffusers' default, e.g. SISS's MNIST model)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    unet = UNet2DModel(**{**ARCHS[args.arch], "attention_head_dim": args.head_dim})
    unet.save_pretrained(f"{args.out}/unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(f"{args.out}/scheduler")
    params = sum(p.numel() for p in unet.parameters())
    print(f"{args.out}: {args.arch} UNet2DModel, {params} parameters, random weights (seed {args.seed})")


if __name__ == "__main__":
    main()
