#!/usr/bin/env python3
"""Golden fixture for Lethe's DPM-Solver++(2M) (tests/numerics/golden_diffusers.rs).

diffusers' `DPMSolverMultistepScheduler`, made from a DDPMScheduler config as a pipeline user
would (`from_config`; defaults otherwise: dpmsolver++, order 2, midpoint, linspace spacing,
final sigma zero), runs a whole sampling loop from fixed x_T, for 10 and 20 steps, with the
linear and the cosine (squaredcos_cap_v2) beta schedule. The "model" is analytic, so samples
stay in range (a random UNet's ε sends x̂0 to ±10⁴ and makes a 1e-4 check meaningless) and
Lethe's test can evaluate it too: the optimal ε for data N(0, 0.5²) plus a nonlinear term,
`eps(x, t) = √(1 − ᾱ_t) / (0.25·ᾱ_t + 1 − ᾱ_t) · x + 0.1·√ᾱ_t·tanh(x)`, in float32.

Writes tests/fixtures/golden/dpm_solver.safetensors:
  x_T                          the starting noise, [2, c, s, s]
  timesteps_<steps>_<schedule> the timesteps diffusers evaluated the model at (int64)
  sample_<steps>_<schedule>    the final sample (before any clamping)

    .venv/bin/pip install torch diffusers
    .venv/bin/python tools/make_dpm_solver_golden.py
"""

from pathlib import Path

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
from safetensors.torch import save_file

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden"


def main():
    torch.set_grad_enabled(False)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    out = {"x_T": x_T}
    for schedule in ("linear", "squaredcos_cap_v2"):
        ddpm = DDPMScheduler(beta_schedule=schedule)
        for steps in (10, 20):
            solver = DPMSolverMultistepScheduler.from_config(ddpm.config)
            solver.set_timesteps(steps)
            x = x_T.clone()
            for t in solver.timesteps:
                abar = solver.alphas_cumprod[t]
                eps = (1 - abar).sqrt() / (0.25 * abar + 1 - abar) * x + 0.1 * abar.sqrt() * torch.tanh(x)
                x = solver.step(eps, t, x).prev_sample
            name = f"{steps}_{'cosine' if schedule != 'linear' else 'linear'}"
            out[f"timesteps_{name}"] = solver.timesteps.to(torch.int64)
            out[f"sample_{name}"] = x.contiguous()
            print(name, solver.timesteps.tolist(), f"sample std {x.std().item():.4f}")
    save_file(out, GOLDEN / "dpm_solver.safetensors")


if __name__ == "__main__":
    main()
