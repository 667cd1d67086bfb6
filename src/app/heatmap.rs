//! The |difference| heat map drawn by `shaders/heatmap.wgsl` inside an egui wgpu paint
//! callback. The values go to the GPU as an R32Float texture, updated only when a new grid
//! arrives; the colormap runs in the fragment shader. Where the renderer is not wgpu the
//! panel uses [`super::colormap`] on the CPU instead; `tests/gui/gui_heatmap.rs` checks the two
//! agree.

use std::collections::HashMap;
use std::sync::Arc;

use eframe::egui;
use eframe::egui_wgpu::{self, CallbackResources, CallbackTrait, ScreenDescriptor};
use eframe::wgpu;

use super::colormap::ValueImage;

pub const SHADER: &str = include_str!("../../shaders/heatmap.wgsl");

/// The pipeline and one values texture per heat map slot.
pub struct HeatmapRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    slots: HashMap<String, Slot>,
}

struct Slot {
    version: u64,
    size: (u32, u32),
    texture: wgpu::Texture,
    bind_group: wgpu::BindGroup,
}

impl HeatmapRenderer {
    pub fn new(device: &wgpu::Device, target_format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("lethe heatmap"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("lethe heatmap values"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                count: None,
            }],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("lethe heatmap"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("lethe heatmap"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: Default::default(),
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target_format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
                compilation_options: Default::default(),
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            multiview_mask: None,
            cache: None,
        });
        Self {
            pipeline,
            layout,
            slots: HashMap::new(),
        }
    }

    /// Uploads `values` into `slot` unless that version is already there.
    pub fn upload(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        slot: &str,
        version: u64,
        values: &ValueImage,
    ) {
        let size = (values.width as u32, values.height as u32);
        if let Some(s) = self.slots.get(slot)
            && s.version == version
            && s.size == size
        {
            return;
        }
        let needs_new = self.slots.get(slot).is_none_or(|s| s.size != size);
        if needs_new {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("lethe heatmap values"),
                size: wgpu::Extent3d {
                    width: size.0,
                    height: size.1,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::R32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let view = texture.create_view(&Default::default());
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("lethe heatmap values"),
                layout: &self.layout,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&view),
                }],
            });
            self.slots.insert(
                slot.to_string(),
                Slot {
                    version,
                    size,
                    texture,
                    bind_group,
                },
            );
        }
        let s = self.slots.get_mut(slot).expect("slot just made");
        s.version = version;
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &s.texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            bytemuck::cast_slice(&values.values),
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(4 * size.0),
                rows_per_image: Some(size.1),
            },
            wgpu::Extent3d {
                width: size.0,
                height: size.1,
                depth_or_array_layers: 1,
            },
        );
    }

    /// Draws `slot` over the whole current viewport.
    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>, slot: &str) {
        if let Some(s) = self.slots.get(slot) {
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.draw(0..6, 0..1);
        }
    }
}

/// Puts the renderer into egui-wgpu's callback resources (once, at start-up).
pub fn register(render_state: &egui_wgpu::RenderState) {
    let renderer = HeatmapRenderer::new(&render_state.device, render_state.target_format);
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(renderer);
}

/// One heat map in the UI: which slot, which version of the values.
pub struct HeatmapCallback {
    pub slot: String,
    pub version: u64,
    pub values: Arc<ValueImage>,
}

impl CallbackTrait for HeatmapCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(r) = resources.get_mut::<HeatmapRenderer>() {
            r.upload(device, queue, &self.slot, self.version, &self.values);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        if let Some(r) = resources.get::<HeatmapRenderer>() {
            r.draw(pass, &self.slot);
        }
    }
}

/// The paint callback for `rect`.
pub fn paint_callback(rect: egui::Rect, callback: HeatmapCallback) -> egui::PaintCallback {
    egui_wgpu::Callback::new_paint_callback(rect, callback)
}

/// Renders `values` with the shader into an RGBA8 image of the same size, off screen: the
/// shader's half of the CPU/GPU agreement test, and a way to use it without a window.
pub fn render_offscreen(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    values: &ValueImage,
) -> Result<Vec<u8>, String> {
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let mut renderer = HeatmapRenderer::new(device, format);
    renderer.upload(device, queue, "offscreen", 0, values);
    let (w, h) = (values.width as u32, values.height as u32);
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("lethe heatmap offscreen"),
        size: wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = target.create_view(&Default::default());
    // Rows of a texture→buffer copy are padded to 256 bytes.
    let row =
        (4 * w).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("lethe heatmap readback"),
        size: (row * h) as u64,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("lethe heatmap offscreen"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        renderer.draw(&mut pass, "offscreen");
    }
    encoder.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture: &target,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: Some(h),
            },
        },
        wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        },
    );
    queue.submit([encoder.finish()]);
    let slice = buffer.slice(..);
    slice.map_async(wgpu::MapMode::Read, |_| {});
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| format!("wgpu poll: {e}"))?;
    let data = slice
        .get_mapped_range()
        .map_err(|e| format!("wgpu readback: {e}"))?;
    let mut out = Vec::with_capacity((4 * w * h) as usize);
    for y in 0..h {
        let start = (y * row) as usize;
        out.extend_from_slice(&data[start..start + (4 * w) as usize]);
    }
    Ok(out)
}
