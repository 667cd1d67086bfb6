#!/usr/bin/env python3
"""Golden fixture for Lethe's DDPM ELBO terms (tests/numerics/golden_elbo.rs, issue #4).

The functions below are improved-diffusion's (openai/improved-diffusion,
`improved_diffusion/gaussian_diffusion.py::_vb_terms_bpd`, `q_posterior_mean_variance`,
`_predict_xstart_from_eps`, `_prior_bpd`, and `losses.py::normal_kl`,
`approx_standard_normal_cdf`, `discretized_gaussian_log_likelihood`) transcribed to NumPy for
one image, with `clip_denoised=True` (as `calc_bpd_loop` defaults to) and the FIXED_SMALL /
FIXED_LARGE variances. The schedule is diffusers' (linear betas in float32,
`alphas_cumprod = cumprod(1 - betas)` in float32), converted to float64 as improved-diffusion
holds its coefficients; the fixture stores it so Lethe's test builds the very same schedule.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy
    /tmp/venv/bin/python tools/make_elbo_golden.py     # writes tests/fixtures/elbo/terms.json
"""

import json
import os

import numpy as np


def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + np.exp(logvar1 - logvar2)
                  + ((mean1 - mean2) ** 2) * np.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * np.power(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered_x = x - means
    inv_stdv = np.exp(-log_scales)
    plus_in = inv_stdv * (centered_x + 1.0 / 255.0)
    cdf_plus = approx_standard_normal_cdf(plus_in)
    min_in = inv_stdv * (centered_x - 1.0 / 255.0)
    cdf_min = approx_standard_normal_cdf(min_in)
    log_cdf_plus = np.log(np.clip(cdf_plus, 1e-12, None))
    log_one_minus_cdf_min = np.log(np.clip(1.0 - cdf_min, 1e-12, None))
    cdf_delta = cdf_plus - cdf_min
    return np.where(x < -0.999, log_cdf_plus,
                    np.where(x > 0.999, log_one_minus_cdf_min,
                             np.log(np.clip(cdf_delta, 1e-12, None))))


class Diffusion:
    def __init__(self, betas32, variance):
        alphas_cumprod32 = np.cumprod(np.float32(1.0) - betas32, dtype=np.float32)
        self.betas = betas32.astype(np.float64)
        self.alphas_cumprod = alphas_cumprod32.astype(np.float64)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = (self.betas * (1.0 - self.alphas_cumprod_prev)
                                   / (1.0 - self.alphas_cumprod))
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = (self.betas * np.sqrt(self.alphas_cumprod_prev)
                                     / (1.0 - self.alphas_cumprod))
        self.posterior_mean_coef2 = ((1.0 - self.alphas_cumprod_prev) * np.sqrt(1.0 - self.betas)
                                     / (1.0 - self.alphas_cumprod))
        if variance == "fixed_small":
            self.model_log_variance = self.posterior_log_variance_clipped
        else:
            self.model_log_variance = np.log(np.append(self.posterior_variance[1], self.betas[1:]))

    def q_posterior_mean(self, x_start, x_t, t):
        return self.posterior_mean_coef1[t] * x_start + self.posterior_mean_coef2[t] * x_t

    def vb_term_bpd(self, x_start, x_t, t, eps):
        true_mean = self.q_posterior_mean(x_start, x_t, t)
        true_log_variance = self.posterior_log_variance_clipped[t]
        pred_xstart = (self.sqrt_recip_alphas_cumprod[t] * x_t
                       - self.sqrt_recipm1_alphas_cumprod[t] * eps)
        pred_xstart = np.clip(pred_xstart, -1, 1)
        model_mean = self.q_posterior_mean(pred_xstart, x_t, t)
        model_log_variance = self.model_log_variance[t]
        kl = normal_kl(true_mean, true_log_variance, model_mean, model_log_variance)
        kl = kl.mean() / np.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=model_mean, log_scales=0.5 * model_log_variance)
        decoder_nll = decoder_nll.mean() / np.log(2.0)
        return decoder_nll if t == 0 else kl

    def prior_bpd(self, x_start):
        t = len(self.betas) - 1
        qt_mean = np.sqrt(self.alphas_cumprod[t]) * x_start
        qt_log_variance = np.log(1.0 - self.alphas_cumprod[t])
        return normal_kl(qt_mean, qt_log_variance, 0.0, 0.0).mean() / np.log(2.0)


def main():
    rng = np.random.default_rng(20261123)
    # diffusers: torch.linspace(1e-4, 0.02, 1000, dtype=float32); float32 values stored.
    betas32 = np.linspace(1e-4, 0.02, 1000, dtype=np.float64).astype(np.float32)
    d = 48
    out = {"betas": [float(b) for b in betas32], "cases": []}
    for variance in ("fixed_small", "fixed_large"):
        diffusion = Diffusion(betas32, variance)
        for t in (0, 1, 2, 10, 250, 500, 999):
            for error in (0.0, 0.05, 3.0):  # exact-ish, small, and clipping-sized errors
                pixels = rng.integers(0, 256, size=d)
                pixels[:2] = (0, 255)  # the edge bins
                x_start = (pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0))
                noise = rng.standard_normal(d).astype(np.float32)
                a = np.float32(np.sqrt(diffusion.alphas_cumprod[t]))
                s = np.float32(np.sqrt(1.0 - diffusion.alphas_cumprod[t]))
                x_t = (a * x_start + s * noise).astype(np.float32)
                eps = (noise + error * rng.standard_normal(d)).astype(np.float32)
                out["cases"].append({
                    "variance": variance,
                    "t": t,
                    "x0": [float(v) for v in x_start],
                    "xt": [float(v) for v in x_t],
                    "eps": [float(v) for v in eps],
                    "term_bits": float(diffusion.vb_term_bpd(
                        x_start.astype(np.float64), x_t.astype(np.float64), t,
                        eps.astype(np.float64))),
                    "prior_bits": float(diffusion.prior_bpd(x_start.astype(np.float64))),
                })
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "tests", "fixtures", "elbo", "terms.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {len(out['cases'])} cases to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
