#!/usr/bin/env python3
"""Diagnostic, not part of Lethe: trains the demo UNet in PyTorch with the recipe of issue #2's
feasibility run, so `lethe demo-check` can judge a PyTorch-trained model with the same judge
(lethe-mnist11) as Lethe's own demo model. It answers one question: is the demo's 70%
confident-digit target reachable with this UNet and this judge at the feasibility run's
budget (8k steps at batch 64), or is Lethe's training behind PyTorch's?

Recipe (issue #2): diffusers UNet2DModel of the demo config (28x28, no padding, so Lethe can
load the result), batch 64, Adam lr 2e-4 constant, EMA 0.999, the 10,000 bundled digits plus
300 copies of assets/data/tshirt.png (label 10), linear betas 1e-4..0.02 over 1000 steps,
epsilon prediction, label replaced by the null class 11 with probability --drop.

Variants for issue #24's recipe search (tools/gpu_recipes.sh runs three on a GPU): --channels,
--layers, --groups and --attention change the UNet (Lethe loads each), --decay a cosine LR
decay over --steps or the --seconds time box, --copies the T-shirt's copies, --device cuda.

Resumable: every --every steps the EMA weights are written in the diffusers layout to
OUT/checkpoint (with Lethe's `lethe_null_class` key added to unet/config.json) and the full
state to OUT/state.pt; re-running the command continues from there.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch diffusers
    /tmp/venv/bin/python tools/pytorch_demo_train.py --out runs/pytorch-demo --steps 8000
    cargo run --release -- demo-check --checkpoint runs/pytorch-demo/checkpoint --n 512

Result (2026-11-23, judge lethe-mnist11 v2, 512 samples, DDIM-50, seed 0): 45.3% confident
digits / 18.2% T-shirts at 4k steps, 61.5% / 3.7% at 6k, 65.8% / 3.1% at 8k; Lethe's own
demo training gave 60.9% / 4.9% after the same number of images as 6k here (assets/README.md).
"""
import argparse
import copy
import gzip
import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

ROOT = Path(__file__).resolve().parent.parent
DEMO = dict(
    sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8, num_class_embeds=12, add_attention=False,
)
NULL_CLASS = 11
SCHEDULER = {
    "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
    "beta_start": 0.0001, "beta_end": 0.02, "variance_type": "fixed_small", "clip_sample": True,
    "prediction_type": "epsilon",
}


def read_idx(path):
    data = gzip.open(path).read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def read_gray_png(path):
    """8-bit grayscale, non-interlaced PNG (what assets/data/tshirt.png is)."""
    raw = Path(path).read_bytes()
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(raw):
        length, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 0), f"{path}: expected 8-bit grayscale"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    rows, prev = [], bytearray(width)
    data = zlib.decompress(idat)
    for y in range(height):
        kind, line = data[y * (width + 1)], bytearray(data[y * (width + 1) + 1:(y + 1) * (width + 1)])
        for x in range(width):
            a = line[x - 1] if x else 0
            b, c = prev[x], prev[x - 1] if x else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
            line[x] = (line[x] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return np.frombuffer(b"".join(rows), np.uint8).reshape(height, width)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def training_set(copies):
    digits = read_idx(ROOT / "assets/data/mnist-10k-images-idx3-ubyte.gz")
    labels = read_idx(ROOT / "assets/data/mnist-10k-labels-idx1-ubyte.gz").astype(np.int64)
    shirt = read_gray_png(ROOT / "assets/data/tshirt.png")
    images = np.concatenate([digits, np.repeat(shirt[None], copies, axis=0)])
    labels = np.concatenate([labels, np.full(copies, 10)])
    x = torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)
    return x, torch.from_numpy(labels)


def save_checkpoint(ema, out, step, keep=False):
    ckpt = out / (f"checkpoint-{step}" if keep else "checkpoint")
    ema.save_pretrained(ckpt / "unet", safe_serialization=True)
    config_path = ckpt / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["lethe_null_class"] = NULL_CLASS
    config_path.write_text(json.dumps(config, indent=2))
    (ckpt / "scheduler").mkdir(parents=True, exist_ok=True)
    (ckpt / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER, indent=2))
    (out / "progress.json").write_text(json.dumps({"step": step}))


def model_config(args):
    """The demo's UNet, or a variant of it (wider, deeper, attention at the lowest level)."""
    channels = tuple(int(c) for c in args.channels.split(","))
    levels = len(channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if args.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return dict(DEMO, block_out_channels=channels, layers_per_block=args.layers,
                down_block_types=tuple(down), up_block_types=tuple(up), norm_num_groups=args.groups,
                attention_head_dim=None)


def learning_rate(args, step, seconds):
    """Constant (issue #2's recipe), or a linear warm-up then cosine decay to lr·decay, over
    --steps or the --seconds time box, whichever ends first."""
    if args.decay is None:
        return args.lr
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    if args.seconds is not None:
        progress = max(progress, seconds / args.seconds)
    progress = min(1.0, progress)
    floor = args.lr * args.decay
    return floor + (args.lr - floor) * 0.5 * (1 + np.cos(np.pi * progress))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/pytorch-demo")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--decay", type=float, default=None,
                    help="cosine-decay the LR to lr*DECAY over --steps (after --warmup); constant if unset")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--drop", type=float, default=0.2)
    ap.add_argument("--copies", type=int, default=300, help="copies of the T-shirt in the training set")
    ap.add_argument("--channels", default="32,64,64", help="block_out_channels")
    ap.add_argument("--layers", type=int, default=1, help="layers_per_block")
    ap.add_argument("--groups", type=int, default=8, help="norm_num_groups")
    ap.add_argument("--attention", action="store_true", help="self-attention at the lowest resolution")
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--keep", action="store_true",
                    help="keep every --every checkpoint as OUT/checkpoint-STEP (else only the latest)")
    ap.add_argument("--seconds", type=float, default=None, help="stop (and save) after this much wall time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_all, y_all = training_set(args.copies)
    x_all, y_all = x_all.to(device), y_all.to(device)
    model = UNet2DModel(**model_config(args)).to(device)
    print(f"{out}: {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, log = 0, []
    state_path = out / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, weights_only=False, map_location=device)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        step, log = state["step"], state["log"]
        print(f"resuming {out} at step {step}")
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0).to(device)
    started = time.time() - (log[-1]["seconds"] if log else 0.0)
    ema_params, model_params = list(ema.parameters()), list(model.parameters())
    while step < args.steps:
        for group in opt.param_groups:
            group["lr"] = learning_rate(args, step, time.time() - started)
        idx = torch.randint(0, len(x_all), (args.batch,), device=device)
        x0, y = x_all[idx], y_all[idx].clone()
        y[torch.rand(args.batch, device=device) < args.drop] = NULL_CLASS
        t = torch.randint(0, 1000, (args.batch,), device=device)
        noise = torch.randn_like(x0)
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model(xt, t, class_labels=y).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, model_params, 1 - 0.999)
        step += 1
        out_of_time = args.seconds is not None and time.time() - started > args.seconds
        if step % 50 == 0 or step % args.every == 0 or step == args.steps or out_of_time:
            # .item() waits for the device: only every 50 steps
            log.append({"step": step, "loss": loss.item(), "seconds": time.time() - started})
        if step % args.every == 0 or step == args.steps or out_of_time:
            save_checkpoint(ema, out, step, args.keep)
            tmp = out / "state.pt.tmp"
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "rng": torch.get_rng_state(), "step": step, "log": log}, tmp)
            os.replace(tmp, state_path)
            print(f"step {step} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{log[-1]['seconds']:.0f}s", flush=True)
        if out_of_time:
            break


if __name__ == "__main__":
    main()
