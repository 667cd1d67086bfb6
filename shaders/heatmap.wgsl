// |difference| heat map: one f32 value per pixel in [0, 1] → inferno colour.
// The colormap (9 stops of matplotlib's inferno, linearly interpolated in sRGB bytes) is the
// same table as `src/app/colormap.rs`; `tests/gui_heatmap.rs` renders this shader on a real
// adapter and checks it against the CPU colormap pixel by pixel.

struct VsOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

// Two triangles covering the viewport (egui sets the viewport to the callback's rect).
var<private> CORNERS: array<vec2<f32>, 6> = array<vec2<f32>, 6>(
    vec2<f32>(-1.0, -1.0), vec2<f32>(1.0, -1.0), vec2<f32>(-1.0, 1.0),
    vec2<f32>(-1.0, 1.0), vec2<f32>(1.0, -1.0), vec2<f32>(1.0, 1.0),
);

@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> VsOut {
    let p = CORNERS[index];
    var out: VsOut;
    out.position = vec4<f32>(p, 0.0, 1.0);
    out.uv = vec2<f32>((p.x + 1.0) * 0.5, (1.0 - p.y) * 0.5);
    return out;
}

@group(0) @binding(0) var values: texture_2d<f32>;

// sRGB bytes of inferno at 0, 1/8, …, 1.
var<private> STOPS: array<vec3<f32>, 9> = array<vec3<f32>, 9>(
    vec3<f32>(0.0, 0.0, 4.0),
    vec3<f32>(31.0, 12.0, 72.0),
    vec3<f32>(85.0, 15.0, 109.0),
    vec3<f32>(136.0, 34.0, 106.0),
    vec3<f32>(186.0, 54.0, 85.0),
    vec3<f32>(227.0, 89.0, 51.0),
    vec3<f32>(249.0, 140.0, 10.0),
    vec3<f32>(249.0, 201.0, 50.0),
    vec3<f32>(252.0, 255.0, 164.0),
);

fn colormap(v: f32) -> vec3<f32> {
    let x = clamp(v, 0.0, 1.0) * 8.0;
    let i = min(u32(floor(x)), 7u);
    let f = x - f32(i);
    return mix(STOPS[i], STOPS[i + 1u], f) / 255.0;
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let dims = textureDimensions(values);
    let texel = min(vec2<u32>(in.uv * vec2<f32>(dims)), dims - vec2<u32>(1u, 1u));
    let v = textureLoad(values, texel, 0).r;
    return vec4<f32>(colormap(v), 1.0);
}
