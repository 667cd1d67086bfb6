#!/usr/bin/env python3
"""PyTorch reference for `lethe bench`: the same demo UNet (diffusers UNet2DModel built from
the same config — Lethe's golden test shows the two compute the same function), the same
training step (forward, MSE loss, backward, Adam update) and sampling forward, on the CPU in
fp32 (or under `torch.autocast` with `--precision bf16|f16`, as `lethe bench --precision`),
median of several timed runs after 2 warm-ups.

`--model cifar10` times google/ddpm-cifar10-32's architecture (35.7M parameters, random
weights) instead of the demo UNet; `--checkpoint DIR` any diffusers UNet2DModel checkpoint
(`DIR/unet/`, e.g. one `tools/make_random_unet.py` writes), as `lethe bench --checkpoint DIR`; `--device cuda` runs on the GPU (eager, fp32 with TF32
off unless `--tf32`, each timed run ending in `torch.cuda.synchronize()`), the counterpart
of `lethe bench --backend wgpu`.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch diffusers
    /tmp/venv/bin/python bench/pytorch_reference.py --threads 2
    cargo run --release -- bench                      # the Lethe side, same table layout
    python3 bench/pytorch_reference.py --device cuda --model cifar10
    lethe bench --backend wgpu --model cifar10
"""
import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import UNet2DModel

# The demo model's config, as Lethe writes it (assets/demo-model/unet/config.json), minus
# Lethe's own key.
DEMO = dict(
    sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8, num_class_embeds=12, add_attention=False,
)

# google/ddpm-cifar10-32's unet/config.json (Lethe: UNetConfig::ddpm_cifar10).
CIFAR10 = dict(
    sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=32,
    attention_head_dim=None,  # as the hub's config.json says: one head (diffusers' default would be 8-channel heads)
)


def inputs(batch, size, channels, classes, device):
    n = batch * channels * size * size
    x = (torch.arange(n) * 7919 % 1000).float().div(500).sub(1).reshape(batch, channels, size, size)
    t = (torch.arange(batch) * 131 % 1000).float()
    c = torch.arange(batch) % classes if classes else None
    return x.to(device), t.to(device), (c.to(device) if c is not None else None)


def time_runs(fn, runs, warmup=2, sync=lambda: None):
    times = []
    for i in range(warmup + runs):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times), len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-batch", default="32,64")
    ap.add_argument("--sample-batch", default="64")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--size", type=int, default=None, help="image side (the UNet is fully convolutional; default: the model's)")
    ap.add_argument("--model", choices=["demo", "cifar10"], default="demo")
    ap.add_argument("--checkpoint", help="a diffusers checkpoint directory (its unet/ subfolder) instead of --model")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls/convolutions on CUDA (off: plain fp32, as Lethe)")
    ap.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32",
                    help="autocast dtype (f16: sampling only, as in Lethe: no loss scaling)")
    args = ap.parse_args()
    low = {"bf16": torch.bfloat16, "f16": torch.float16}.get(args.precision)

    def autocast():
        return torch.autocast(args.device, dtype=low) if low else contextlib.nullcontext()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cuda = args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    if args.checkpoint:
        model = UNet2DModel.from_pretrained(args.checkpoint, subfolder="unet").to(args.device)
        config, name = model.config, args.checkpoint
    else:
        config = DEMO if args.model == "demo" else CIFAR10
        model, name = UNet2DModel(**config).to(args.device), args.model
    size = args.size or config["sample_size"]
    channels, classes = config["in_channels"], config.get("num_class_embeds")
    params = sum(p.numel() for p in model.parameters())
    where = torch.cuda.get_device_name() if cuda else f"CPU; {torch.get_num_threads()} thread(s)"
    print(f"{name} UNet: {params} parameters, {channels}x{size}x{size}; PyTorch {torch.__version__} {'fp32' if low is None else 'autocast ' + args.precision}{' (TF32 allowed)' if cuda and args.tf32 else ''} eager on {where}")
    rows = []
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    train_batches = [] if args.precision == "f16" else [int(v) for v in args.train_batch.split(",")]
    for b in train_batches:
        x, t, c = inputs(b, size, channels, classes, args.device)
        target = torch.zeros_like(x)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                eps = model(x, t, class_labels=c).sample
            loss = (eps.float() - target).pow(2).mean()
            loss.backward()
            opt.step()
        rows.append(("training step (fwd+bwd+Adam)", b, *time_runs(step, args.runs, sync=sync)))
    model.eval()
    for b in [int(v) for v in args.sample_batch.split(",")]:
        x, t, c = inputs(b, size, channels, classes, args.device)

        def fwd():
            with torch.no_grad(), autocast():
                model(x, t, class_labels=c)
        rows.append(("sampling forward (no grad)", b, *time_runs(fwd, args.runs, sync=sync)))
    print("| what | batch | median ms | min ms | runs |")
    print("|---|---:|---:|---:|---:|")
    for what, b, med, mn, n in rows:
        print(f"| {what} | {b} | {med:.1f} | {mn:.1f} | {n} |")


if __name__ == "__main__":
    main()
