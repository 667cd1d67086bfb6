#!/usr/bin/env python3
"""Golden fixtures from diffusers/PyTorch for Lethe's tests (run once by a developer, not CI).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch diffusers safetensors
    /tmp/venv/bin/python tools/make_golden.py

Writes tests/fixtures/golden/:
  cond/     a tiny class-conditional UNet2DModel with attention (2 heads), current key names
  legacy/   a tiny unconditional UNet2DModel in the google/ddpm-* style (flip_sin_to_cos=False,
            freq_shift=1, downsample_padding=0) saved with LEGACY attention key names
            (query/key/value/proj_attn)
  each with unet/config.json, unet/diffusion_pytorch_model.safetensors, scheduler/scheduler_config.json
  and io.safetensors: inputs and diffusers' outputs (UNet forward).
  schedulers.safetensors: DDPMScheduler / DDIMScheduler values (alphas_cumprod for both beta
  schedules, add_noise, DDPM step with its noise, DDIM step with eta 0 and 0.5).
"""
import json
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden"


def save_model(model, scheduler, name, legacy=False):
    d = OUT / name
    model.save_pretrained(d / "unet", safe_serialization=True)
    scheduler.save_pretrained(d / "scheduler")
    if legacy:
        from safetensors.torch import load_file
        path = d / "unet" / "diffusion_pytorch_model.safetensors"
        sd = load_file(path)
        renamed = {}
        for k, v in sd.items():
            for new, old in ((".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")):
                if new in k:
                    k = k.replace(new, old)
            renamed[k] = v
        save_file(renamed, path)
    return d


def unet_case(name, config, with_classes, legacy=False):
    torch.manual_seed(0)
    model = UNet2DModel(**config).eval()
    # Perturb the zero-initialised-looking parts so every parameter matters.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = save_model(model, DDPMScheduler(), name, legacy)
    g = torch.Generator().manual_seed(1)
    c, s = config["in_channels"], config["sample_size"]
    x = torch.randn(3, c, s, s, generator=g)
    t = torch.tensor([0.0, 17.0, 999.0])
    kwargs = {}
    tensors = {"x": x, "t": t}
    if with_classes:
        labels = torch.tensor([0, 3, 4])
        kwargs["class_labels"] = labels
        tensors["class_labels"] = labels.to(torch.int64)
    with torch.no_grad():
        out = model(x, t, **kwargs).sample
    tensors["eps"] = out
    save_file({k: v.contiguous() for k, v in tensors.items()}, d / "io.safetensors")
    print(name, "params", sum(p.numel() for p in model.parameters()), "eps std", out.std().item())


def scheduler_case():
    g = torch.Generator().manual_seed(2)
    out = {}
    lin = DDPMScheduler(beta_schedule="linear")
    cos = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    out["linear_alphas_cumprod"] = lin.alphas_cumprod
    out["cosine_alphas_cumprod"] = cos.alphas_cumprod
    x0 = torch.rand(4, 1, 6, 6, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 6, 6, generator=g)
    ts = torch.tensor([0, 1, 500, 999])
    out["x0"], out["noise"], out["add_noise_t"] = x0, noise, ts.to(torch.int64)
    out["add_noise"] = lin.add_noise(x0, noise, ts)

    sample = torch.randn(2, 1, 6, 6, generator=g) * 1.5
    model_output = torch.randn(2, 1, 6, 6, generator=g)
    out["sample"], out["model_output"] = sample, model_output
    # DDPM full-length ancestral steps, fixed_small and fixed_large, clip on.
    for variance in ("fixed_small", "fixed_large"):
        sch = DDPMScheduler(variance_type=variance)
        sch.set_timesteps(1000)
        for t in (999, 500, 1, 0):
            step_gen = torch.Generator().manual_seed(100 + t)
            noise_gen = torch.Generator().manual_seed(100 + t)
            prev = sch.step(model_output, t, sample, generator=step_gen).prev_sample
            # diffusers draws the variance noise with randn_tensor(shape, generator): same draw.
            out[f"ddpm_{variance}_t{t}_noise"] = torch.randn(sample.shape, generator=noise_gen)
            out[f"ddpm_{variance}_t{t}"] = prev
    # DDIM, 50 steps (leading spacing), eta 0 and 0.5 with explicit variance noise.
    sch = DDIMScheduler()
    sch.set_timesteps(50)
    out["ddim_timesteps"] = sch.timesteps.to(torch.int64)
    variance_noise = torch.randn(2, 1, 6, 6, generator=g)
    out["ddim_variance_noise"] = variance_noise
    for t in (980, 500, 20, 0):
        out[f"ddim_eta0_t{t}"] = sch.step(model_output, t, sample, eta=0.0).prev_sample
        out[f"ddim_eta05_t{t}"] = sch.step(model_output, t, sample, eta=0.5, variance_noise=variance_noise).prev_sample
    save_file({k: v.contiguous().to(torch.float32) if v.is_floating_point() else v.contiguous() for k, v in out.items()},
              OUT / "schedulers.safetensors")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    unet_case("cond", dict(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=8, num_class_embeds=5,
    ), with_classes=True)
    unet_case("legacy", dict(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8, 16), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, norm_eps=1e-6,
    ), with_classes=False, legacy=True)
    scheduler_case()
    print("versions: torch", torch.__version__, "diffusers", __import__("diffusers").__version__)


if __name__ == "__main__":
    main()
