//! The adapter and device, with the limits Charter asks for and the errors it catches.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crate::kernels::Kernels;
use crate::pool::Pool;
use crate::record::Recorder;

/// A GPU failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No adapter, or none that gives a device.
    #[error("no WebGPU adapter: {0}")]
    NoAdapter(String),
    /// Something the kernels cannot do (a weight format, a head size, a limit).
    #[error("not supported on the GPU: {0}")]
    Unsupported(String),
    /// Shapes that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The device reported an error (validation, out of memory) or was lost.
    #[error("GPU error: {0}")]
    Device(String),
}

/// How to open the device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// The most bytes one storage binding may hold, below the adapter's own limit (to
    /// test tensors split across bindings on an adapter that would not split them).
    pub max_binding: Option<u64>,
    /// Leaves subgroup operations unused even where the adapter has them, so the
    /// reductions go through workgroup memory (to test that path on any adapter).
    pub without_subgroups: bool,
    /// Leaves `shader-f16` unused even where the adapter has it, so the prefill
    /// products' weight tiles hold f32 (to test that path on any adapter).
    pub without_f16: bool,
}

/// The device Charter's kernels run on.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) kernels: Kernels,
    pub(crate) recorder: RefCell<Recorder>,
    pub(crate) pool: Rc<RefCell<Pool>>,
    /// Bytes one storage binding may hold.
    pub(crate) max_binding: u64,
    errors: Arc<Mutex<Vec<String>>>,
    info: wgpu::AdapterInfo,
    subgroups: bool,
    f16: bool,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("adapter", &self.info.name).field("max_binding", &self.max_binding).finish_non_exhaustive()
    }
}

impl Gpu {
    /// Opens the first adapter the platform offers (high performance preferred), with
    /// every limit it allows, and compiles every pipeline.
    pub async fn new(options: GpuOptions) -> Result<Gpu, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let limits = adapter.limits();
        // Subgroup reductions where the adapter has them (reduce/subgroup.wgsl).
        let subgroups = !options.without_subgroups && adapter.features().contains(wgpu::Features::SUBGROUP);
        // Prefill tiles of f16 weights where the adapter has them (tile/f16.wgsl).
        let f16 = !options.without_f16 && adapter.features().contains(wgpu::Features::SHADER_F16);
        let mut features = wgpu::Features::empty();
        features.set(wgpu::Features::SUBGROUP, subgroups);
        features.set(wgpu::Features::SHADER_F16, f16);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("charter"),
                required_features: features,
                // The defaults cap a binding at 128 MiB; an embedding table is larger.
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut list) = sink.lock() {
                list.push(e.to_string());
            }
        }));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut list) = lost.lock() {
                list.push(format!("device lost ({reason:?}): {message}"));
            }
        });
        let max_binding =
            limits.max_storage_buffer_binding_size.min(limits.max_buffer_size).min(options.max_binding.unwrap_or(u64::MAX));
        let kernels = Kernels::new(&device, subgroups, f16);
        // Arena entries serve as uniform and as storage bindings.
        let align = limits.min_uniform_buffer_offset_alignment.max(limits.min_storage_buffer_offset_alignment).max(256);
        let recorder = Recorder::new(&device, u64::from(align));
        let gpu = Gpu {
            device,
            queue,
            kernels,
            recorder: RefCell::new(recorder),
            pool: Rc::default(),
            max_binding,
            errors,
            info: adapter.get_info(),
            subgroups,
            f16,
        };
        gpu.check()?;
        Ok(gpu)
    }

    /// [`Gpu::new`], waiting for it (native only: the web has no blocking waits).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: GpuOptions) -> Result<Gpu, GpuError> {
        pollster::block_on(Gpu::new(options))
    }

    /// Gives the device up now, its buffers with it (as a driver reset or the browser
    /// reclaiming the GPU would): every later read fails with the reason, and nothing
    /// panics or hangs. The owner then moves the model elsewhere.
    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// The adapter, for reports: `"gpu (llvmpipe, vulkan)"`.
    pub fn describe(&self) -> String {
        // Browsers may withhold the adapter's name.
        let name = if self.info.name.is_empty() { "unnamed adapter" } else { &self.info.name };
        let subgroups = if self.subgroups { ", subgroups" } else { "" };
        let f16 = if self.f16 { ", f16" } else { "" };
        format!("gpu ({name}, {:?}{subgroups}{f16})", self.info.backend).to_lowercase()
    }

    /// Whether the prefill products keep their weight tiles in f16 (the adapter has
    /// `shader-f16` and the options allow it).
    pub fn uses_f16(&self) -> bool {
        self.f16
    }

    /// Whether the kernels reduce with subgroup operations (the adapter has them and the
    /// options allow them).
    pub fn uses_subgroups(&self) -> bool {
        self.subgroups
    }

    /// Whether the adapter is a software rasterizer (lavapipe, SwiftShader, WARP).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The first error the device reported since the last check, if any.
    pub(crate) fn check(&self) -> Result<(), GpuError> {
        let mut list = self.errors.lock().map_err(|_| GpuError::Device("error list poisoned".into()))?;
        match list.drain(..).next() {
            Some(e) => Err(GpuError::Device(e)),
            None => Ok(()),
        }
    }
}
