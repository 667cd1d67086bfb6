"""Writes tests/fixtures/golden/t_quantiles.json: scipy's two-sided 95% Student-t quantiles
(t.ppf(0.975, df)) and one t-interval, the reference for `lethe reproduce`'s confidence
intervals (src/reproduce/stats.rs).   python tools/make_t_quantiles_golden.py  (needs scipy)"""
import json
import pathlib

import numpy as np
import scipy
from scipy import stats

values = [0.031, 0.0, 0.062, 0.047]
lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
out = {
    "scipy": scipy.__version__,
    "df": list(range(1, 121)),
    "t975": [float(stats.t.ppf(0.975, d)) for d in range(1, 121)],
    "interval": {"values": values, "mean": float(np.mean(values)), "lo": float(lo), "hi": float(hi)},
}
path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/golden/t_quantiles.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print("wrote", path)
