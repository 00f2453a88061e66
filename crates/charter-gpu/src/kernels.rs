//! The WGSL sources, composed, and their pipelines, compiled once per device.
//!
//! WGSL has no includes: a kernel that reads weights is its own file appended to
//! `formats/common.wgsl` and one format file, which supply `dequant8`; a matrix product
//! is followed by one of `store/*.wgsl`, which says where its values go (one tensor; the
//! parts of a stack of matrices; or, for interleaved gate and up rows, the gated
//! `act(gate) · up`). The norms share `reduce.wgsl`; the gates share `activation.wgsl`.
//! Pipelines for a
//! weight format are compiled when the first matrix of that format is uploaded (at
//! load), the others when the device opens.

use std::cell::RefCell;
use std::collections::HashMap;

use charter_kernels::Format;

use crate::GpuError;

const COMMON: &str = include_str!("kernels/formats/common.wgsl");
const MATMUL: &str = include_str!("kernels/matmul.wgsl");
const MATMUL_TILED: &str = include_str!("kernels/matmul_tiled.wgsl");
const EMBED: &str = include_str!("kernels/embed.wgsl");
const ACTIVATION: &str = include_str!("kernels/activation.wgsl");
const REDUCE: &str = include_str!("kernels/reduce.wgsl");
const PREPARE_ATTENTION: &str = include_str!("kernels/prepare_attention.wgsl");
const STORE_ONE: &str = include_str!("kernels/store/one.wgsl");
const STORE_SPLIT: &str = include_str!("kernels/store/split.wgsl");
const STORE_GATED: &str = include_str!("kernels/store/gated.wgsl");
const RMS_NORM: &str = include_str!("kernels/rms_norm.wgsl");
const ELEMENTWISE: &str = include_str!("kernels/elementwise.wgsl");
const ROPE: &str = include_str!("kernels/rope.wgsl");
const ATTENTION: &str = include_str!("kernels/attention.wgsl");
const SHORTLIST: &str = include_str!("kernels/shortlist.wgsl");

/// The block reader of a weight format, or `None` for formats the GPU kernels do not
/// read.
fn format_source(format: Format) -> Option<&'static str> {
    Some(match format {
        Format::F32 => include_str!("kernels/formats/f32.wgsl"),
        Format::F16 => include_str!("kernels/formats/f16.wgsl"),
        Format::BF16 => include_str!("kernels/formats/bf16.wgsl"),
        Format::Q4_0 => include_str!("kernels/formats/q4_0.wgsl"),
        Format::Q4_1 => include_str!("kernels/formats/q4_1.wgsl"),
        Format::Q5_0 => include_str!("kernels/formats/q5_0.wgsl"),
        Format::Q5_1 => include_str!("kernels/formats/q5_1.wgsl"),
        Format::Q8_0 => include_str!("kernels/formats/q8_0.wgsl"),
        Format::Q4K => include_str!("kernels/formats/q4_k.wgsl"),
        Format::Q5K => include_str!("kernels/formats/q5_k.wgsl"),
        Format::Q6K => include_str!("kernels/formats/q6_k.wgsl"),
        Format::Q2K | Format::Q3K | Format::Q8K => return None,
    })
}

/// Values per group that the GPU reads at once: a row length must be a multiple.
pub(crate) fn row_multiple(format: Format) -> usize {
    if format.is_quantized() { format.block_len() } else { 8 }
}

/// One composed shader module, as the device compiles it.
#[derive(Debug, Clone)]
pub struct Shader {
    /// `matmul.q4_k`, `attention`, …
    pub name: String,
    /// The WGSL text.
    pub source: String,
}

/// The kernels that read weights: name, the kernel, and the store file after it (with
/// what it needs before it).
const WEIGHT_KERNELS: [(&str, &str, &[&str]); 7] = [
    ("matmul", MATMUL, &[STORE_ONE]),
    ("matmul_tiled", MATMUL_TILED, &[STORE_ONE]),
    ("matmul_split", MATMUL, &[STORE_SPLIT]),
    ("matmul_tiled_split", MATMUL_TILED, &[STORE_SPLIT]),
    ("matmul_gated", MATMUL, &[ACTIVATION, STORE_GATED]),
    ("matmul_tiled_gated", MATMUL_TILED, &[ACTIVATION, STORE_GATED]),
    ("embed", EMBED, &[]),
];

fn weights_kernel(kernel: &str, store: &[&str], format: Format) -> Option<String> {
    Some(format!("{COMMON}\n{}\n{kernel}\n{}", format_source(format)?, store.join("\n")))
}

/// The kernels that read no weights: name and the files composed, in order.
fn plain_kernels() -> [(&'static str, String); 6] {
    [
        ("rms_norm", format!("{REDUCE}\n{RMS_NORM}")),
        ("elementwise", format!("{ACTIVATION}\n{ELEMENTWISE}")),
        ("rope", ROPE.to_owned()),
        ("attention", ATTENTION.to_owned()),
        ("prepare_attention", format!("{REDUCE}\n{PREPARE_ATTENTION}")),
        ("shortlist", SHORTLIST.to_owned()),
    ]
}

/// Every shader module, composed: what naga validates and the device compiles.
pub fn shaders() -> Vec<Shader> {
    let mut out = Vec::new();
    for format in Format::ALL {
        for (kind, text, store) in WEIGHT_KERNELS {
            if let Some(source) = weights_kernel(text, store, format) {
                out.push(Shader { name: format!("{kind}.{}", format.name().to_lowercase()), source });
            }
        }
    }
    for (name, source) in plain_kernels() {
        out.push(Shader { name: name.to_owned(), source });
    }
    out
}

/// A compute pipeline and the layout of its one bind group.
pub(crate) struct Kernel {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

fn compile(device: &wgpu::Device, label: &str, source: &str, entries: &[&str]) -> Vec<Kernel> {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    entries
        .iter()
        .map(|entry| {
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            Kernel { pipeline, layout }
        })
        .collect()
}

/// The kernels that read one weight format (in [`WEIGHT_KERNELS`]' order).
pub(crate) struct FormatKernels {
    pub(crate) matmul: Kernel,
    pub(crate) matmul_tiled: Kernel,
    pub(crate) matmul_split: Kernel,
    pub(crate) matmul_tiled_split: Kernel,
    pub(crate) matmul_gated: Kernel,
    pub(crate) matmul_tiled_gated: Kernel,
    pub(crate) embed: Kernel,
}

/// Every pipeline of one device.
pub(crate) struct Kernels {
    pub(crate) rms_norm: Kernel,
    pub(crate) add_rms_norm: Kernel,
    pub(crate) norm_add_rms_norm: Kernel,
    pub(crate) add: Kernel,
    pub(crate) add_bias: Kernel,
    pub(crate) scale: Kernel,
    pub(crate) gated_silu: Kernel,
    pub(crate) gated_gelu: Kernel,
    pub(crate) copy_rows: Kernel,
    pub(crate) rope: Kernel,
    pub(crate) kv_write: Kernel,
    pub(crate) attend: Kernel,
    pub(crate) prepare_attention: Kernel,
    pub(crate) top_of_logits: Kernel,
    pub(crate) top_of_pairs: Kernel,
    formats: RefCell<HashMap<Format, std::rc::Rc<FormatKernels>>>,
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Kernels {
        let [norm, ew, rope, attn, prepare, top] = plain_kernels().map(|(_, source)| source);
        let mut norm = compile(device, "rms_norm", &norm, &["rms_norm", "add_rms_norm", "norm_add_rms_norm"]).into_iter();
        let mut ew =
            compile(device, "elementwise", &ew, &["add", "add_bias", "scale", "gated_silu", "gated_gelu", "copy_rows"]).into_iter();
        let mut attn = compile(device, "attention", &attn, &["kv_write", "attend"]).into_iter();
        let mut rope = compile(device, "rope", &rope, &["main"]).into_iter();
        let mut prepare = compile(device, "prepare_attention", &prepare, &["main"]).into_iter();
        let mut top = compile(device, "shortlist", &top, &["top_of_logits", "top_of_pairs"]).into_iter();
        let next = |it: &mut std::vec::IntoIter<Kernel>| it.next().expect("one kernel per entry point");
        Kernels {
            rms_norm: next(&mut norm),
            add_rms_norm: next(&mut norm),
            norm_add_rms_norm: next(&mut norm),
            add: next(&mut ew),
            add_bias: next(&mut ew),
            scale: next(&mut ew),
            gated_silu: next(&mut ew),
            gated_gelu: next(&mut ew),
            copy_rows: next(&mut ew),
            rope: next(&mut rope),
            kv_write: next(&mut attn),
            attend: next(&mut attn),
            prepare_attention: next(&mut prepare),
            top_of_logits: next(&mut top),
            top_of_pairs: next(&mut top),
            formats: RefCell::default(),
        }
    }

    /// The kernels of `format`, compiled on first use.
    pub(crate) fn format(&self, device: &wgpu::Device, format: Format) -> Result<std::rc::Rc<FormatKernels>, GpuError> {
        if let Some(k) = self.formats.borrow().get(&format) {
            return Ok(k.clone());
        }
        let unsupported = || GpuError::Unsupported(format!("{} weights", format.name()));
        let name = format.name().to_lowercase();
        let mut compiled = Vec::with_capacity(WEIGHT_KERNELS.len());
        for (kind, text, store) in WEIGHT_KERNELS {
            let source = weights_kernel(text, store, format).ok_or_else(unsupported)?;
            compiled.extend(compile(device, &format!("{kind}.{name}"), &source, &["main"]));
        }
        let Ok([matmul, matmul_tiled, matmul_split, matmul_tiled_split, matmul_gated, matmul_tiled_gated, embed]) =
            <[Kernel; 7]>::try_from(compiled)
        else {
            return Err(unsupported());
        };
        let k = std::rc::Rc::new(FormatKernels {
            matmul,
            matmul_tiled,
            matmul_split,
            matmul_tiled_split,
            matmul_gated,
            matmul_tiled_gated,
            embed,
        });
        self.formats.borrow_mut().insert(format, k.clone());
        Ok(k)
    }
}
