//! The WGSL sources, composed, and their pipelines, compiled once per device.
//!
//! WGSL has no includes: a kernel that reads weights is its own file appended to
//! `formats/common.wgsl` and one format file, which supply `dequant8`; a matrix product
//! is followed by one of `store/*.wgsl`, which says where its values go (one tensor; the
//! parts of a stack of matrices; or, for interleaved gate and up rows, the gated
//! `act(gate) · up`). A prefill product opens with one of `tile/*.wgsl`, the precision
//! of its weight tile (f16 where the device has `shader-f16`). The norms share
//! `reduce.wgsl`; the gates share `activation.wgsl`. Pipelines for a
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
const REDUCE_TREE: &str = include_str!("kernels/reduce/tree.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("kernels/reduce/subgroup.wgsl");
const PREPARE_ATTENTION: &str = include_str!("kernels/prepare_attention.wgsl");
const MATMUL_PARAMS: &str = include_str!("kernels/matmul_params.wgsl");
const TILE_F32: &str = include_str!("kernels/tile/f32.wgsl");
const TILE_F16: &str = include_str!("kernels/tile/f16.wgsl");
const ROWS_ONE: &str = include_str!("kernels/rows/one.wgsl");
const ROWS_TWO: &str = include_str!("kernels/rows/two.wgsl");
const STORE_ONE: &str = include_str!("kernels/store/one.wgsl");
const STORE_SPLIT: &str = include_str!("kernels/store/split.wgsl");
const STORE_GATED: &str = include_str!("kernels/store/gated.wgsl");
const RMS_NORM: &str = include_str!("kernels/rms_norm.wgsl");
const ELEMENTWISE: &str = include_str!("kernels/elementwise.wgsl");
const ROPE: &str = include_str!("kernels/rope.wgsl");
const SHIFT_CACHE: &str = include_str!("kernels/shift_cache.wgsl");
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

/// The file that opens a module of `kernel`: for a prefill product, the precision of its
/// weight tile; nothing for the others.
fn tile_source(kernel: &str, f16: bool) -> &'static str {
    match (kernel == MATMUL_TILED, f16) {
        (false, _) => "",
        (true, false) => TILE_F32,
        (true, true) => TILE_F16,
    }
}

fn weights_kernel(kernel: &str, store: &[&str], format: Format, f16: bool) -> Option<String> {
    // The embedding reads weights with parameters of its own.
    let (params, rows) = if kernel == EMBED { ("", "") } else { (MATMUL_PARAMS, ROWS_ONE) };
    let tile = tile_source(kernel, f16);
    Some(format!("{tile}\n{COMMON}\n{}\n{params}\n{rows}\n{kernel}\n{}", format_source(format)?, store.join("\n")))
}

/// The products of a stack in two formats (`rows/two.wgsl`): the split kernels only, since
/// only q, k and v come stacked that way.
const MIXED_KERNELS: [(&str, &str); 2] = [("matmul_split", MATMUL), ("matmul_tiled_split", MATMUL_TILED)];

fn mixed_kernel(kernel: &str, first: Format, second: Format, f16: bool) -> Option<String> {
    Some(format!(
        "{}\n{COMMON}\n{}\n{}\n{MATMUL_PARAMS}\n{ROWS_TWO}\n{kernel}\n{STORE_SPLIT}",
        tile_source(kernel, f16),
        format_source(first)?,
        second_format(format_source(second)?)
    ))
}

/// A format file with every name it declares suffixed `_b` (`dequant8_b`,
/// `BLOCK_VALUES_B`), so it can sit beside another in one module: WGSL has no
/// namespaces.
fn second_format(source: &str) -> String {
    let declared: Vec<&str> = source
        .lines()
        .filter_map(|line| line.strip_prefix("fn ").or_else(|| line.strip_prefix("const ")))
        .filter_map(|rest| rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next())
        .filter(|name| !name.is_empty())
        .collect();
    let mut out = String::with_capacity(source.len() + 64);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(word);
        if declared.contains(&word.as_str()) {
            out.push_str(if word.chars().all(|c| c.is_uppercase() || c == '_' || c.is_ascii_digit()) { "_B" } else { "_b" });
        }
        word.clear();
    };
    for c in source.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The kernels that read no weights: name and the files composed, in order, with the
/// workgroup reductions on subgroup operations or through workgroup memory.
fn plain_kernels(subgroups: bool) -> [(&'static str, String); 7] {
    let reduce = if subgroups { REDUCE_SUBGROUP } else { REDUCE_TREE };
    [
        ("rms_norm", format!("{reduce}\n{REDUCE}\n{RMS_NORM}")),
        ("elementwise", format!("{ACTIVATION}\n{ELEMENTWISE}")),
        ("rope", ROPE.to_owned()),
        ("attention", format!("{reduce}\n{ATTENTION}")),
        ("prepare_attention", format!("{reduce}\n{REDUCE}\n{PREPARE_ATTENTION}")),
        ("shortlist", SHORTLIST.to_owned()),
        ("shift_cache", SHIFT_CACHE.to_owned()),
    ]
}

/// A module as the device is given it: on the web, one that uses subgroup operations
/// must say so first (naga, natively, refuses the directive; the device's feature is
/// what it checks).
fn for_device(source: &str, subgroups: bool) -> std::borrow::Cow<'_, str> {
    if cfg!(target_arch = "wasm32") && subgroups && source.contains("subgroup") {
        format!("enable subgroups;\n{source}").into()
    } else {
        source.into()
    }
}

/// Every shader module, composed: what naga validates and the device compiles. Modules
/// whose weight tile holds f16 end in `.f16-tile` (they open with `enable f16;`).
pub fn shaders() -> Vec<Shader> {
    let mut out = Vec::new();
    let mut push = |name: String, source: String| {
        if !out.iter().any(|s: &Shader| s.source == source) {
            out.push(Shader { name, source });
        }
    };
    for f16 in [false, true] {
        let precision = if f16 { ".f16-tile" } else { "" };
        for format in Format::ALL {
            for (kind, text, store) in WEIGHT_KERNELS {
                if let Some(source) = weights_kernel(text, store, format, f16) {
                    push(format!("{kind}.{}{precision}", format.name().to_lowercase()), source);
                }
            }
        }
        for first in Format::ALL {
            for second in Format::ALL.into_iter().filter(|&f| f != first) {
                for (kind, text) in MIXED_KERNELS {
                    if let Some(source) = mixed_kernel(text, first, second, f16) {
                        let name = format!("{kind}.{}+{}{precision}", first.name().to_lowercase(), second.name().to_lowercase());
                        push(name, source);
                    }
                }
            }
        }
    }
    for subgroups in [false, true] {
        for (name, source) in plain_kernels(subgroups) {
            push(if subgroups { format!("{name}.subgroups") } else { name.to_owned() }, source);
        }
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

/// The products of a stack in two formats (in [`MIXED_KERNELS`]' order).
pub(crate) struct MixedKernels {
    pub(crate) matmul_split: Kernel,
    pub(crate) matmul_tiled_split: Kernel,
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
    pub(crate) shift_gather: Kernel,
    pub(crate) shift_scatter: Kernel,
    /// Whether the prefill products' weight tiles hold f16 (tile/f16.wgsl).
    f16: bool,
    formats: RefCell<HashMap<Format, std::rc::Rc<FormatKernels>>>,
    mixed: RefCell<HashMap<(Format, Format), std::rc::Rc<MixedKernels>>>,
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device, subgroups: bool, f16: bool) -> Kernels {
        let [norm, ew, rope, attn, prepare, top, shift] = plain_kernels(subgroups).map(|(_, source)| for_device(&source, subgroups).into_owned());
        let mut norm = compile(device, "rms_norm", &norm, &["rms_norm", "add_rms_norm", "norm_add_rms_norm"]).into_iter();
        let mut ew =
            compile(device, "elementwise", &ew, &["add", "add_bias", "scale", "gated_silu", "gated_gelu", "copy_rows"]).into_iter();
        let mut attn = compile(device, "attention", &attn, &["kv_write", "attend"]).into_iter();
        let mut rope = compile(device, "rope", &rope, &["main"]).into_iter();
        let mut prepare = compile(device, "prepare_attention", &prepare, &["main"]).into_iter();
        let mut top = compile(device, "shortlist", &top, &["top_of_logits", "top_of_pairs"]).into_iter();
        let mut shift = compile(device, "shift_cache", &shift, &["gather", "scatter"]).into_iter();
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
            shift_gather: next(&mut shift),
            shift_scatter: next(&mut shift),
            f16,
            formats: RefCell::default(),
            mixed: RefCell::default(),
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
            let source = weights_kernel(text, store, format, self.f16).ok_or_else(unsupported)?;
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

    /// The kernels of a stack whose rows are in `first`, then in `second`, compiled on
    /// first use.
    pub(crate) fn mixed(&self, device: &wgpu::Device, first: Format, second: Format) -> Result<std::rc::Rc<MixedKernels>, GpuError> {
        if let Some(k) = self.mixed.borrow().get(&(first, second)) {
            return Ok(k.clone());
        }
        let unsupported = || GpuError::Unsupported(format!("a stack of {} and {} weights", first.name(), second.name()));
        let name = format!("{}+{}", first.name().to_lowercase(), second.name().to_lowercase());
        let mut compiled = Vec::with_capacity(MIXED_KERNELS.len());
        for (kind, text) in MIXED_KERNELS {
            let source = mixed_kernel(text, first, second, self.f16).filter(|_| first != second).ok_or_else(unsupported)?;
            compiled.extend(compile(device, &format!("{kind}.{name}"), &source, &["main"]));
        }
        let Ok([matmul_split, matmul_tiled_split]) = <[Kernel; 2]>::try_from(compiled) else {
            return Err(unsupported());
        };
        let k = std::rc::Rc::new(MixedKernels { matmul_split, matmul_tiled_split });
        self.mixed.borrow_mut().insert((first, second), k.clone());
        Ok(k)
    }
}
