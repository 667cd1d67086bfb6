"""Synthetic weights that a Rust test can regenerate bit for bit: every value is a function of
the tensor's name and the element's index, so golden fixtures need not store the weights
(tests/numerics/synthetic.rs holds the same rule in Rust).

    key(name)  = FNV-1a 64 of the UTF-8 name
    u(name, i) = top 24 bits of splitmix64(key(name) + i) / 2^24, in [0, 1); v = 2u - 1

v is exactly representable in float32; the callers scale it with float32 operations in the
same order as the Rust side.
"""

import numpy as np

MASK = (1 << 64) - 1


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for byte in name.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def splitmix64(z):
    """Vectorised over a uint64 array (wrapping arithmetic, as Rust's wrapping_* ops)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def symmetric_unit(name, count):
    """v in [-1, 1) per element, exactly representable in float32."""
    with np.errstate(over="ignore"):
        index = np.uint64(fnv1a64(name)) + np.arange(count, dtype=np.uint64)
    top = (splitmix64(index) >> np.uint64(40)).astype(np.float64)
    return (2.0 * top / float(1 << 24) - 1.0).astype(np.float32)


def unit_tensor(name, shape):
    return symmetric_unit(name, int(np.prod(shape, dtype=np.int64))).reshape(shape)


def unet_value(name, shape):
    """A UNet2DModel parameter: weights uniform with variance 1/fan_in, norm scales near 1,
    biases small — so activations stay O(1) through the network."""
    v = unit_tensor(name, shape)
    f = np.float32
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return f(np.sqrt(3.0 / fan_in)) * v
    if "norm" in name and name.endswith("weight"):
        return f(1.0) + f(0.2) * v
    return f(0.1) * v
