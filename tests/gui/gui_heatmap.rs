//! The heat map's two renderers agree: `shaders/heatmap.wgsl` on a real wgpu adapter
//! (Mesa's lavapipe in CI) and the CPU colormap give the same colours for the same values.

use eframe::wgpu;
use lethe::app::colormap::{INFERNO_STOPS, ValueImage, inferno};
use lethe::app::heatmap;

fn device() -> (wgpu::Device, wgpu::Queue) {
    let instance = wgpu::Instance::default();
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::LowPower,
        ..Default::default()
    }))
    .expect("no wgpu adapter: install Mesa's software Vulkan (mesa-vulkan-drivers libvulkan1)");
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))
        .expect("wgpu device")
}

#[test]
fn shader_and_cpu_colormap_give_the_same_colours() {
    // 256 values across [0, 1] plus out-of-range ones (clamped by both), in a 64×5 image.
    let mut values: Vec<f32> = (0..256).map(|i| i as f32 / 255.0).collect();
    values.extend((0..64).map(|i| -0.5 + i as f32 * (2.0 / 63.0)));
    let image = ValueImage {
        width: 64,
        height: 5,
        values,
    };
    let (device, queue) = device();
    let gpu = heatmap::render_offscreen(&device, &queue, &image).expect("render");
    let cpu = image.to_rgba();
    assert_eq!(gpu.len(), cpu.len());
    let mut worst = 0;
    for (i, (g, c)) in gpu.chunks(4).zip(cpu.chunks(4)).enumerate() {
        let diff = (0..3).map(|k| g[k].abs_diff(c[k])).max().unwrap();
        worst = worst.max(diff);
        // Rounding of the interpolated byte may differ by one between GPU and CPU.
        assert!(
            diff <= 1,
            "pixel {i} (value {}): shader {:?} vs CPU {:?}",
            image.values[i],
            &g[..3],
            &c[..3]
        );
        assert_eq!(g[3], 255);
    }
    // The stops themselves come out exactly, and the image is not one colour.
    assert_eq!(inferno(0.0).map(f32::from), INFERNO_STOPS[0]);
    assert_ne!(&gpu[..4], &gpu[gpu.len() / 2..gpu.len() / 2 + 4]);
    println!("shader vs CPU colormap: largest channel difference {worst} over 320 pixels");
}

#[test]
fn the_shader_source_holds_the_cpu_table() {
    // Both copies of the table must change together.
    for stop in INFERNO_STOPS {
        let text = format!("vec3<f32>({:.1}, {:.1}, {:.1})", stop[0], stop[1], stop[2]);
        assert!(
            heatmap::SHADER.contains(&text),
            "{text} missing from heatmap.wgsl"
        );
    }
}
