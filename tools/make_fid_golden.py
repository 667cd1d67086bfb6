#!/usr/bin/env python3
"""Golden fixture for Lethe's Fréchet distance (tests/numerics/golden_fid.rs, issue #4).

For each case, writes two float32 feature arrays `<case>_a.npy`, `<case>_b.npy` (N×D, rows =
samples) and records the Fréchet distance of their statistics computed the way pytorch-fid
does (`calculate_frechet_distance`: mean, unbiased covariance `np.cov(rowvar=False)`, and
`scipy.linalg.sqrtm(sigma1 @ sigma2)`, real part), in float64 from the stored float32 values.
Also writes `stats_a.npz` / `stats_b.npz` (`mu`, `sigma`, as pytorch-fid saves them) for one
case, so Lethe's statistics-file path is checked against the same number.

The cases cover well-conditioned sets, identical sets, and near-singular covariances (fewer
samples than dimensions; two almost collinear features) where a naive product square root is
fragile. For each case the script also prints the eigenvalue form of docs/metrics.md, FID
(`Tr((S1 S2)^½) = Σ √λ(S1^½ S2 S1^½)`) beside scipy's, so their agreement is on record.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy scipy
    /tmp/venv/bin/python tools/make_fid_golden.py      # writes tests/fixtures/fid/
"""

import json
import os

import numpy as np
import scipy
import scipy.linalg

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "fid")


def stats(features):
    x = features.astype(np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_scipy(mu1, s1, mu2, s2):
    """pytorch-fid's calculate_frechet_distance without its eps retry (reported instead)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1.dot(s2))  # pytorch-fid passes disp=False (deprecated)
    finite = bool(np.isfinite(covmean).all())
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)), finite


def frechet_eigen(mu1, s1, mu2, s2):
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ s2 @ root
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def cases(rng):
    d = 64
    a = rng.standard_normal((300, d))
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    yield "wellconditioned", a, rng.standard_normal((300, d)) @ (np.eye(d) + 0.3 * mix) + 0.5
    yield "identical", a, a.copy()
    small = rng.standard_normal((20, 32))  # 20 samples in 32 dimensions: rank-19 covariances
    yield "fewer_samples_than_dims", small, rng.standard_normal((24, 32)) * 1.5 + 0.2
    base = rng.standard_normal((200, 16))
    base[:, 1] = base[:, 0] + 1e-4 * rng.standard_normal(200)  # two almost collinear features
    other = rng.standard_normal((200, 16))
    other[:, 3] = 2.0 * other[:, 2] + 1e-4 * rng.standard_normal(200)
    yield "near_collinear", base, other + 0.1
    # ReLU features as the classifier's penultimate layer gives them: many exact zeros.
    relu = np.maximum(rng.standard_normal((500, 128)) - 0.8, 0)
    yield "relu_features", relu, np.maximum(rng.standard_normal((400, 128)) * 1.2 - 0.9, 0)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261123)
    expected = {}
    for name, a, b in cases(rng):
        a = a.astype(np.float32)
        b = b.astype(np.float32)
        np.save(os.path.join(OUT, f"{name}_a.npy"), a)
        np.save(os.path.join(OUT, f"{name}_b.npy"), b)
        mu1, s1 = stats(a)
        mu2, s2 = stats(b)
        fid, finite = frechet_scipy(mu1, s1, mu2, s2)
        eig = frechet_eigen(mu1, s1, mu2, s2)
        expected[name] = {"fid": fid, "sqrtm_finite": finite, "n_a": len(a), "n_b": len(b), "dim": a.shape[1]}
        print(f"{name:26s} N={len(a)}/{len(b)} D={a.shape[1]:3d}  scipy {fid:.12g}  eigen {eig:.12g}  "
              f"rel diff {abs(fid - eig) / max(abs(fid), 1e-300):.2e}")
        if name == "wellconditioned":
            np.savez(os.path.join(OUT, "stats_a.npz"), mu=mu1, sigma=s1)
            np.savez(os.path.join(OUT, "stats_b.npz"), mu=mu2, sigma=s2)
    expected["_made_by"] = (f"tools/make_fid_golden.py with numpy {np.__version__}, scipy {scipy.__version__}; "
                            "fid = pytorch-fid's formula with scipy.linalg.sqrtm, float64")
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
