//! The |difference| heat map on the CPU: the same table and interpolation as
//! `shaders/heatmap.wgsl`, used when the renderer is not wgpu (and to check the shader).

/// sRGB bytes of matplotlib's inferno at 0, 1/8, …, 1 (the shader holds the same table).
pub const INFERNO_STOPS: [[f32; 3]; 9] = [
    [0.0, 0.0, 4.0],
    [31.0, 12.0, 72.0],
    [85.0, 15.0, 109.0],
    [136.0, 34.0, 106.0],
    [186.0, 54.0, 85.0],
    [227.0, 89.0, 51.0],
    [249.0, 140.0, 10.0],
    [249.0, 201.0, 50.0],
    [252.0, 255.0, 164.0],
];

/// Colour of a value in [0, 1] (clamped; NaN reads as 0), as sRGB bytes.
pub fn inferno(value: f32) -> [u8; 3] {
    let v = if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, 1.0)
    };
    let x = v * 8.0;
    let i = (x.floor() as usize).min(7);
    let f = x - i as f32;
    let (a, b) = (INFERNO_STOPS[i], INFERNO_STOPS[i + 1]);
    std::array::from_fn(|c| (a[c] + (b[c] - a[c]) * f).round() as u8)
}

/// A grid of scalar values (row-major, `width × height`) — what the heat map shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueImage {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

impl ValueImage {
    /// The CPU fallback: RGBA bytes, row-major.
    pub fn to_rgba(&self) -> Vec<u8> {
        self.values
            .iter()
            .flat_map(|&v| {
                let [r, g, b] = inferno(v);
                [r, g, b, 255]
            })
            .collect()
    }
}

/// |current − original| per pixel (mean over channels), tiled like the sample grids
/// (`columns` wide, 2-pixel gaps of 0), so the heat map lines up with them.
pub fn difference_grid(
    original: &[Vec<f32>],
    current: &[Vec<f32>],
    [c, h, w]: [usize; 3],
    columns: usize,
) -> ValueImage {
    let n = original.len().min(current.len());
    let gap = 2;
    let columns = columns.max(1).min(n.max(1));
    let rows = n.div_ceil(columns).max(1);
    let width = columns * (w + gap) + gap;
    let height = rows * (h + gap) + gap;
    let mut values = vec![0.0f32; width * height];
    for k in 0..n {
        let (x0, y0) = (
            (k % columns) * (w + gap) + gap,
            (k / columns) * (h + gap) + gap,
        );
        for y in 0..h {
            for x in 0..w {
                let diff: f32 = (0..c)
                    .map(|ch| {
                        let i = ch * h * w + y * w + x;
                        (current[k][i] - original[k][i]).abs()
                    })
                    .sum::<f32>()
                    / c as f32;
                values[(y0 + y) * width + x0 + x] = diff;
            }
        }
    }
    ValueImage {
        width,
        height,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_are_hit_exactly_and_midpoints_interpolate() {
        assert_eq!(inferno(0.0), [0, 0, 4]);
        assert_eq!(inferno(1.0), [252, 255, 164]);
        assert_eq!(inferno(0.5), [186, 54, 85]);
        // Halfway between stop 0 and stop 1: (0+31)/2=15.5→16, (0+12)/2=6, (4+72)/2=38.
        assert_eq!(inferno(1.0 / 16.0), [16, 6, 38]);
        assert_eq!(inferno(-3.0), inferno(0.0));
        assert_eq!(inferno(7.0), inferno(1.0));
        assert_eq!(inferno(f32::NAN), inferno(0.0));
    }

    #[test]
    fn difference_grid_places_each_tile_and_averages_channels() {
        let shape = [2, 1, 2]; // 2 channels, 1×2 pixels
        let original = vec![vec![0.0, 0.5, 1.0, 1.0], vec![0.2; 4]];
        let current = vec![vec![1.0, 0.5, 0.0, 0.5], vec![0.2; 4]];
        let g = difference_grid(&original, &current, shape, 2);
        assert_eq!((g.width, g.height), (2 * (2 + 2) + 2, 1 + 2 + 2));
        // Tile 0 at (2, 2): pixel 0 = (|1-0| + |0-1|)/2 = 1; pixel 1 = (0 + 0.5)/2 = 0.25.
        assert_eq!(g.values[2 * g.width + 2], 1.0);
        assert_eq!(g.values[2 * g.width + 3], 0.25);
        // Tile 1 is identical to its original; gaps are 0.
        assert_eq!(g.values[2 * g.width + 6], 0.0);
        assert_eq!(g.values[0], 0.0);
    }
}
