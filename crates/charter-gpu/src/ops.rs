//! The operations of a decoder step, each one dispatch (a matrix split across bindings:
//! one per part), recorded and not yet run.

use std::rc::Rc;

use charter_kernels::Format;

use crate::kernels::{FormatKernels, Kernel, row_multiple};
use crate::pool::{Pool, Tensor};
use crate::{Gpu, GpuError};

/// Workgroups per grid dimension that every adapter allows.
const MAX_GROUPS: u32 = 65535;
/// Tokens and rows per matmul workgroup (`TOKENS` and `ROWS` in matmul.wgsl).
pub(crate) const MATMUL_TOKENS: usize = 8;
pub(crate) const MATMUL_ROWS: usize = 8;
/// Rows and tokens of a tile of the prefill matmul (`TILE` in matmul_tiled.wgsl).
pub(crate) const TILED: usize = 32;

/// How rotary embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// `(2i, 2i + 1)`.
    Interleaved,
    /// `(i, i + head_dim / 2)`.
    Halves,
}

/// The activation of a gated feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `x · sigmoid(x)`.
    Silu,
    /// GELU, tanh approximation.
    GeluTanh,
}

impl Gate {
    /// The activation's number in the kernels' parameters (`activation.wgsl`).
    pub(crate) fn number(self) -> u32 {
        match self {
            Gate::Silu => 0,
            Gate::GeluTanh => 1,
        }
    }
}

/// A weight matrix `(rows, cols)` in its GGUF format, in one buffer or, when larger
/// than a binding may be, in several of whole rows.
pub struct Matrix {
    pub(crate) format: Format,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_bytes: usize,
    pub(crate) parts: Vec<Part>,
    pub(crate) kernels: Rc<FormatKernels>,
    /// Rows of each matrix stacked in this one (one entry: a plain matrix).
    pub(crate) stack: Vec<usize>,
    /// A gate and an up projection with their rows interleaved, read only by
    /// [`Gpu::matmul_gated`].
    pub(crate) paired: bool,
    /// The rows of a stack in a second format, from one row on.
    pub(crate) second: Option<Second>,
}

/// The rows of a stack stored in another format than the first ones.
pub(crate) struct Second {
    /// The first such row.
    pub(crate) row: usize,
    /// Where its bytes start in the buffer.
    pub(crate) at: usize,
    /// Bytes per row in that format.
    pub(crate) row_bytes: usize,
    /// The stack's products, reading both formats.
    pub(crate) kernels: Rc<crate::kernels::MixedKernels>,
}

pub(crate) struct Part {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) row_start: usize,
    pub(crate) rows: usize,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Matrix({} {}×{}, {} parts, stack {:?}{})",
            self.format.name(),
            self.rows,
            self.cols,
            self.parts.len(),
            self.stack,
            if self.paired { ", gate and up paired" } else { "" }
        )
    }
}

impl Matrix {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Buffers it is split across.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Rows of each matrix stacked in it (one entry for a plain matrix).
    pub fn stack(&self) -> &[usize] {
        &self.stack
    }

    /// Whether it is a gate and up pair ([`Gpu::gate_up_matrix`]).
    pub fn is_paired(&self) -> bool {
        self.paired
    }
}

/// Rotary tables: `(cos, sin)` for each position and frequency.
#[derive(Debug)]
pub struct RopeTable {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) half: usize,
    pub(crate) capacity: usize,
}

/// Fills a buffer created mapped with `bytes` (zero-padded to its size) and unmaps it.
fn write_mapped(buffer: &wgpu::Buffer, bytes: &[u8]) -> Result<(), GpuError> {
    let mut padded = bytes.to_vec();
    padded.resize(buffer.size() as usize, 0);
    buffer.slice(..).get_mapped_range_mut().map_err(|e| GpuError::Device(e.to_string()))?.copy_from_slice(&padded);
    buffer.unmap();
    Ok(())
}

/// A grid of at least `n` workgroups.
pub(crate) fn grid(n: usize) -> (u32, u32) {
    let n = n.max(1) as u32;
    if n <= MAX_GROUPS { (n, 1) } else { (MAX_GROUPS, n.div_ceil(MAX_GROUPS)) }
}

/// Kernel parameters: `u32`s and `f32`s as the uniform structs declare them.
fn words(values: &[Word]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|w| match *w {
            Word::U(u) => u.to_le_bytes(),
            Word::F(f) => f.to_le_bytes(),
        })
        .collect()
}

#[derive(Clone, Copy)]
pub(crate) enum Word {
    U(u32),
    F(f32),
}

pub(crate) fn u(n: usize) -> Result<Word, GpuError> {
    u32::try_from(n).map(Word::U).map_err(|_| GpuError::Unsupported(format!("a size of {n}")))
}

/// A workgroup count along one grid dimension.
pub(crate) fn count(n: usize) -> Result<u32, GpuError> {
    u32::try_from(n).ok().filter(|&n| n <= MAX_GROUPS).ok_or_else(|| GpuError::Unsupported(format!("{n} workgroups in a row")))
}

pub(crate) fn shape(what: impl Into<String>) -> GpuError {
    GpuError::Shape(what.into())
}

/// One storage binding of a dispatch.
#[derive(Clone)]
pub(crate) enum Bind<'a> {
    Buffer(&'a wgpu::Buffer),
    /// A range of the upload arena.
    Arena(u64, u64),
}

impl Gpu {
    /// Records one dispatch of `k` with its parameters and storage bindings.
    pub(crate) fn dispatch(
        &self,
        k: &Kernel,
        params: &[Word],
        binds: &[(u32, Bind<'_>)],
        groups: (u32, u32, u32),
    ) -> Result<(), GpuError> {
        let params = words(params);
        let mut rec = self.recorder.borrow_mut();
        if !rec.fits(params.len()) {
            rec.submit(&self.queue);
        }
        let at = rec.push(&params);
        let arena = rec.arena.clone();
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &arena,
                offset: at,
                size: wgpu::BufferSize::new((params.len() as u64).next_multiple_of(16)),
            }),
        }];
        for (binding, b) in binds {
            let resource = match b {
                Bind::Buffer(buffer) => buffer.as_entire_binding(),
                Bind::Arena(offset, size) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &arena,
                    offset: *offset,
                    size: wgpu::BufferSize::new(*size),
                }),
            };
            entries.push(wgpu::BindGroupEntry { binding: *binding, resource });
        }
        let group =
            self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &k.layout, entries: &entries });
        let pass = rec.pass(&self.device);
        pass.set_pipeline(&k.pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        Ok(())
    }

    /// Stages `bytes` in the arena for a binding of the next dispatch; returns its range.
    pub(crate) fn stage(&self, bytes: &[u8]) -> (u64, u64) {
        let mut rec = self.recorder.borrow_mut();
        if !rec.fits(bytes.len() + 512) {
            rec.submit(&self.queue);
        }
        let size = (bytes.len() as u64).next_multiple_of(16).max(16);
        let mut padded = bytes.to_vec();
        padded.resize(size as usize, 0);
        (rec.push(&padded), size)
    }

    /// A tensor whose contents are whatever its recycled buffer held.
    pub fn tensor(&self, n: usize, width: usize) -> Tensor {
        let size = ((n * width * 4) as u64).next_multiple_of(16).max(16);
        Tensor { data: Pool::take(&self.pool, &self.device, size), n, width }
    }

    /// Uploads `(n, width)` values.
    pub fn upload(&self, data: &[f32], n: usize, width: usize) -> Result<Tensor, GpuError> {
        if data.len() != n * width {
            return Err(shape(format!("{} values for {n}×{width}", data.len())));
        }
        let t = self.tensor(n, width);
        // Commands already recorded run before this write only if they are submitted first.
        self.flush();
        self.queue.write_buffer(t.buffer(), 0, bytemuck::cast_slice(data));
        Ok(t)
    }

    /// Uploads a weight matrix of `rows` rows of `cols` values stored as `format`,
    /// split by rows across buffers where it exceeds the largest binding.
    pub fn matrix(&self, format: Format, rows: usize, cols: usize, bytes: &[u8]) -> Result<Matrix, GpuError> {
        let multiple = row_multiple(format);
        let row_bytes = format.row_bytes(cols).filter(|_| cols.is_multiple_of(multiple) && cols > 0).ok_or_else(|| {
            GpuError::Unsupported(format!("{} rows of {cols} values (the GPU reads groups of {multiple})", format.name()))
        })?;
        if bytes.len() != rows * row_bytes {
            return Err(shape(format!("{} bytes for {rows} rows of {row_bytes}", bytes.len())));
        }
        let kernels = self.kernels.format(&self.device, format)?;
        // One spare word after the rows: unaligned reads of a row's last bytes touch it.
        let per_part = ((self.max_binding.saturating_sub(8)) / row_bytes as u64) as usize;
        if per_part == 0 {
            return Err(GpuError::Unsupported(format!("a row of {row_bytes} bytes exceeds a binding")));
        }
        let mut parts = Vec::new();
        for row_start in (0..rows).step_by(per_part) {
            let n = per_part.min(rows - row_start);
            parts.push(self.part(&bytes[row_start * row_bytes..(row_start + n) * row_bytes], row_start, n)?);
        }
        self.check()?;
        Ok(Matrix { format, rows, cols, row_bytes, parts, kernels, stack: vec![rows], paired: false, second: None })
    }

    /// One buffer of weight rows, `rows` of them from `row_start` on.
    pub(crate) fn part(&self, chunk: &[u8], row_start: usize, rows: usize) -> Result<Part, GpuError> {
        // One spare word after the rows: unaligned reads of a row's last bytes touch it.
        let size = (chunk.len() as u64 + 4).next_multiple_of(4);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("weights"),
            size,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: true,
        });
        write_mapped(&buffer, chunk)?;
        Ok(Part { buffer, row_start, rows })
    }

    /// Rotary tables for `capacity` positions of `half` frequencies, from row-major
    /// `cos` and `sin` (`capacity × half`).
    pub fn rope_table(&self, cos: &[f32], sin: &[f32], half: usize) -> Result<RopeTable, GpuError> {
        if cos.len() != sin.len() || half == 0 || !cos.len().is_multiple_of(half) {
            return Err(shape(format!("rope tables of {} and {} for {half} frequencies", cos.len(), sin.len())));
        }
        let pairs: Vec<f32> = cos.iter().zip(sin).flat_map(|(&c, &s)| [c, s]).collect();
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("rope"),
            size: (pairs.len() as u64 * 4).max(16),
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: true,
        });
        write_mapped(&buffer, bytemuck::cast_slice(&pairs))?;
        Ok(RopeTable { buffer, half, capacity: cos.len() / half })
    }

    /// Rows `ids` of `table`: `(ids.len(), cols)`.
    pub fn embed(&self, table: &Matrix, ids: &[u32]) -> Result<Tensor, GpuError> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= table.rows) {
            return Err(shape(format!("token {bad} of a table of {}", table.rows)));
        }
        let out = self.tensor(ids.len(), table.cols);
        let (at, size) = self.stage(bytemuck::cast_slice(ids));
        let groups = (table.cols / 8).div_ceil(64) as u32;
        for part in &table.parts {
            let params = [u(part.rows)?, u(table.cols)?, u(ids.len())?, u(table.row_bytes)?, u(part.row_start)?, Word::U(0)];
            self.dispatch(
                &table.kernels.embed,
                &params,
                &[(1, Bind::Buffer(&part.buffer)), (2, Bind::Arena(at, size)), (3, Bind::Buffer(out.buffer()))],
                (groups, ids.len() as u32, 1),
            )?;
        }
        Ok(out)
    }

    /// `x · Wᵀ`: `(n, cols)` to `(n, rows)`.
    pub fn matmul(&self, x: &Tensor, w: &Matrix) -> Result<Tensor, GpuError> {
        if x.width != w.cols || w.paired || w.second.is_some() {
            return Err(shape(format!("{}×{} times {:?}ᵀ", x.n, x.width, w)));
        }
        let out = self.tensor(x.n, w.rows);
        // Few tokens: every row's weights once per eight tokens, spread over many
        // workgroups. Many: tiles of 32 × 32 through workgroup memory.
        let (kernel, tokens, rows) = if x.n > MATMUL_TOKENS {
            (&w.kernels.matmul_tiled, TILED, TILED)
        } else {
            (&w.kernels.matmul, MATMUL_TOKENS, MATMUL_ROWS)
        };
        let tiles = x.n.div_ceil(tokens) as u32;
        for part in &w.parts {
            let (gx, gy) = grid(part.rows.div_ceil(rows));
            let params =
                [u(part.rows)?, u(w.cols)?, u(x.n)?, u(w.row_bytes)?, u(w.rows)?, u(part.row_start)?, Word::U(0), Word::U(0), Word::U(0), u(part.rows)?, Word::U(0), Word::U(0), Word::U(0)];
            self.dispatch(
                kernel,
                &params,
                &[(1, Bind::Buffer(&part.buffer)), (2, Bind::Buffer(x.buffer())), (3, Bind::Buffer(out.buffer()))],
                (gx, gy, tiles),
            )?;
        }
        Ok(out)
    }

    fn elementwise(&self, k: &Kernel, a: &Tensor, b: Option<&Tensor>, width: usize, s: f32) -> Result<Tensor, GpuError> {
        let out = self.tensor(a.n, a.width);
        let (gx, gy) = grid(a.len().div_ceil(256));
        let mut binds = vec![(1, Bind::Buffer(a.buffer())), (3, Bind::Buffer(out.buffer()))];
        if let Some(b) = b {
            binds.push((2, Bind::Buffer(b.buffer())));
        }
        self.dispatch(k, &[u(a.len())?, u(width)?, Word::F(s)], &binds, (gx, gy, 1))?;
        Ok(out)
    }

    /// Elementwise sum.
    pub fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, GpuError> {
        if (a.n, a.width) != (b.n, b.width) {
            return Err(shape(format!("{a:?} + {b:?}")));
        }
        self.elementwise(&self.kernels.add, a, Some(b), a.width, 0.0)
    }

    /// Adds the vector `b` to every row.
    pub fn add_bias(&self, x: &Tensor, b: &Tensor) -> Result<Tensor, GpuError> {
        if b.len() != x.width {
            return Err(shape(format!("bias of {} for rows of {}", b.len(), x.width)));
        }
        self.elementwise(&self.kernels.add_bias, x, Some(b), x.width, 0.0)
    }

    /// Multiplies every element by `s`.
    pub fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor, GpuError> {
        self.elementwise(&self.kernels.scale, x, None, x.width, s)
    }

    /// `gate(g) · up`, elementwise.
    pub fn gated(&self, g: &Tensor, up: &Tensor, gate: Gate) -> Result<Tensor, GpuError> {
        if (g.n, g.width) != (up.n, up.width) {
            return Err(shape(format!("{g:?} gating {up:?}")));
        }
        let k = match gate {
            Gate::Silu => &self.kernels.gated_silu,
            Gate::GeluTanh => &self.kernels.gated_gelu,
        };
        self.elementwise(k, g, Some(up), g.width, 0.0)
    }

    /// Rows `from..` of `x`.
    pub fn rows_from(&self, x: &Tensor, from: usize) -> Result<Tensor, GpuError> {
        if from > x.n {
            return Err(shape(format!("rows from {from} of {x:?}")));
        }
        let out = self.tensor(x.n - from, x.width);
        let (gx, gy) = grid(out.len().div_ceil(256));
        self.dispatch(
            &self.kernels.copy_rows,
            &[u(out.len())?, u(from * x.width)?, Word::F(0.0)],
            &[(1, Bind::Buffer(x.buffer())), (3, Bind::Buffer(out.buffer()))],
            (gx, gy, 1),
        )?;
        Ok(out)
    }

    pub(crate) fn check_norm(&self, x: &Tensor, w: &Tensor) -> Result<usize, GpuError> {
        if w.is_empty() || !x.len().is_multiple_of(w.len()) {
            return Err(shape(format!("rms norm of {} over {x:?}", w.len())));
        }
        Ok(x.len() / w.len())
    }

    /// RMS normalization of each run of `w.len()` values, times `w`.
    pub fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor, GpuError> {
        let runs = self.check_norm(x, w)?;
        let out = self.tensor(x.n, x.width);
        let (gx, gy) = grid(runs);
        self.dispatch(
            &self.kernels.rms_norm,
            &[u(runs)?, u(w.len())?, Word::F(eps)],
            &[(1, Bind::Buffer(w.buffer())), (2, Bind::Buffer(x.buffer())), (5, Bind::Buffer(out.buffer()))],
            (gx, gy, 1),
        )?;
        Ok(out)
    }

    /// `s = a + b` and `rms_norm(s, w)` in one dispatch.
    pub fn add_rms_norm(&self, a: &Tensor, b: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor), GpuError> {
        self.residual_norm(a, b, None, w, eps)
    }

    /// Rotates each of the `n_heads` heads of every row for positions `start..start + n`.
    pub fn rope(
        &self,
        x: &Tensor,
        table: &RopeTable,
        n_heads: usize,
        start: usize,
        pairing: Pairing,
    ) -> Result<Tensor, GpuError> {
        if n_heads == 0 || x.width != n_heads * 2 * table.half || start + x.n > table.capacity {
            return Err(shape(format!("rope of {x:?} in {n_heads} heads at {start}")));
        }
        let out = self.tensor(x.n, x.width);
        let (gx, gy) = grid((x.n * n_heads * table.half).div_ceil(256));
        let style = match pairing {
            Pairing::Interleaved => 0,
            Pairing::Halves => 1,
        };
        self.dispatch(
            &self.kernels.rope,
            &[u(x.n)?, u(n_heads)?, u(table.half)?, u(start)?, Word::U(style)],
            &[(1, Bind::Buffer(&table.buffer)), (2, Bind::Buffer(x.buffer())), (3, Bind::Buffer(out.buffer()))],
            (gx, gy, 1),
        )?;
        Ok(out)
    }

    /// Submits everything recorded.
    pub fn flush(&self) {
        self.recorder.borrow_mut().submit(&self.queue);
    }

    /// Dispatches recorded since the last submission (for reports and tests).
    pub fn pending_dispatches(&self) -> usize {
        self.recorder.borrow().dispatches
    }

    /// Dispatches recorded since the device opened: what a decode step costs in launches
    /// is the difference across it.
    pub fn total_dispatches(&self) -> u64 {
        self.recorder.borrow().total
    }

    /// Submissions since the device opened.
    pub fn total_submissions(&self) -> u64 {
        self.recorder.borrow().submissions
    }

}
