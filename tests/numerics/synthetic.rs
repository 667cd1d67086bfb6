//! Synthetic weights that golden fixtures need not store: every value is a function of the
//! tensor's name and the element's index — the rule of `tools/synthetic_weights.py`, which
//! the fixture scripts gave diffusers' and pytorch-fid's models, reproduced bit for bit.

fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn splitmix64(z: u64) -> u64 {
    let z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// v in [-1, 1) per element of a tensor named `name` (exactly representable in f32).
pub fn unit_values(name: &str, shape: &[usize]) -> impl Iterator<Item = f32> + Clone {
    let key = fnv1a64(name);
    let count = shape.iter().product::<usize>() as u64;
    (0..count).map(move |i| {
        let top = (splitmix64(key.wrapping_add(i)) >> 40) as f64;
        (2.0 * top / f64::from(1u32 << 24) - 1.0) as f32
    })
}

/// A UNet2DModel parameter, as `unet_value` in tools/synthetic_weights.py.
pub fn unet_value(name: &str, shape: &[usize]) -> Vec<f32> {
    let unit = unit_values(name, shape);
    if shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product();
        let scale = (3.0 / fan_in as f64).sqrt() as f32;
        unit.map(|v| scale * v).collect()
    } else if name.contains("norm") && name.ends_with("weight") {
        unit.map(|v| 1.0f32 + 0.2f32 * v).collect()
    } else {
        unit.map(|v| 0.1f32 * v).collect()
    }
}
