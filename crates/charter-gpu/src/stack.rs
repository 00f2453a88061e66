//! Stacks of matrices that read the same input (a layer's q, k and v; its gate and
//! up): uploaded as one matrix of their rows one after another, so one dispatch reads
//! the input once and writes each matrix's product to its own tensor
//! (`kernels/store/split.wgsl`). A decode step takes two dispatches fewer per q, k, v.
//! A stack may hold two formats, one after the other (`kernels/rows/two.wgsl`).
//!
//! A gate and an up projection are paired instead: their rows interleaved, so one
//! dispatch writes the gated `act(gate) · up` itself (`kernels/store/gated.wgsl`) and
//! neither product is ever written out: two dispatches fewer per layer.

use crate::kernels::row_multiple;
use crate::ops::{Bind, Gate, MATMUL_ROWS, MATMUL_TOKENS, Matrix, Second, TILED, Word, grid, shape, u};
use crate::pool::Tensor;
use crate::{Gpu, GpuError};

use charter_kernels::Format;

/// The most matrices one stack holds (the outputs `store/split.wgsl` has).
pub const MAX_STACK: usize = 3;

impl Gpu {
    /// Uploads matrices of one `format` and row length `cols` (each given as its row
    /// count and its bytes) as one stack. Refused where the stack would not fit one
    /// binding; the caller then keeps them apart.
    pub fn stacked_matrix(&self, format: Format, cols: usize, parts: &[(usize, &[u8])]) -> Result<Matrix, GpuError> {
        let parts: Vec<(Format, usize, &[u8])> = parts.iter().map(|&(rows, bytes)| (format, rows, bytes)).collect();
        self.mixed_stack(cols, &parts)
    }

    /// Uploads matrices of row length `cols` (each given as its format, its row count
    /// and its bytes) as one stack: of one format, or of two where every matrix of the
    /// second follows every one of the first (q and k in Q4_K, then v in Q6_K), each
    /// row read as its own format reads it. Refused otherwise, and where the stack would
    /// not fit one binding; the caller then keeps them apart.
    pub fn mixed_stack(&self, cols: usize, parts: &[(Format, usize, &[u8])]) -> Result<Matrix, GpuError> {
        if parts.is_empty() || parts.len() > MAX_STACK {
            return Err(shape(format!("a stack of {} matrices", parts.len())));
        }
        if let Some((format, rows, bytes)) =
            parts.iter().find(|(format, rows, bytes)| format.row_bytes(cols).map(|b| b * rows) != Some(bytes.len()))
        {
            return Err(shape(format!("{} bytes for {rows} rows of {cols} {} values", bytes.len(), format.name())));
        }
        let first = parts[0].0;
        let split = parts.iter().take_while(|p| p.0 == first).count();
        let (head, tail) = parts.split_at(split);
        if let Some(&(other, _, _)) = tail.first()
            && tail.iter().any(|p| p.0 != other)
        {
            return Err(GpuError::Unsupported("a stack of more than two formats, or of one format after another twice".into()));
        }
        let head_rows: usize = head.iter().map(|p| p.1).sum();
        let head_bytes: usize = head.iter().map(|p| p.2.len()).sum();
        let rows = parts.iter().map(|p| p.1).sum();
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.2.iter().copied()).collect();
        let mut m = match tail.first() {
            None => self.matrix(first, rows, cols, &bytes)?,
            Some(&(other, _, _)) => {
                // One buffer: the first format's rows, then the second's, found by offset.
                let unreadable = |f: Format| {
                    GpuError::Unsupported(format!("{} rows of {cols} values (the GPU reads groups of {})", f.name(), row_multiple(f)))
                };
                let row_bytes = first.row_bytes(cols).filter(|_| cols.is_multiple_of(row_multiple(first))).ok_or_else(|| unreadable(first))?;
                let row_bytes_b = other.row_bytes(cols).filter(|_| cols.is_multiple_of(row_multiple(other))).ok_or_else(|| unreadable(other))?;
                if bytes.len() as u64 + 8 > self.max_binding {
                    return Err(GpuError::Unsupported(format!("a stack of {} bytes exceeds a binding", bytes.len())));
                }
                let kernels = self.kernels.format(&self.device, first)?;
                let second = Second { row: head_rows, at: head_bytes, row_bytes: row_bytes_b, kernels: self.kernels.mixed(&self.device, first, other)? };
                let m = Matrix {
                    format: first,
                    rows,
                    cols,
                    row_bytes,
                    parts: vec![self.part(&bytes, 0, rows)?],
                    kernels,
                    stack: Vec::new(),
                    paired: false,
                    second: Some(second),
                };
                self.check()?;
                m
            }
        };
        if m.parts.len() != 1 {
            return Err(GpuError::Unsupported(format!("a stack of {} bytes exceeds a binding", bytes.len())));
        }
        m.stack = parts.iter().map(|p| p.1).collect();
        Ok(m)
    }

    /// The product of `x` with each matrix of a stack, in order, from one dispatch (a
    /// plain matrix: its one product).
    pub fn matmul_stack(&self, x: &Tensor, w: &Matrix) -> Result<Vec<Tensor>, GpuError> {
        self.matmul_stack_biased(x, w, &[])
    }

    /// [`Gpu::matmul_stack`] with each matrix's bias added to its product, in the same
    /// dispatch (`biases`: one per matrix, or none).
    pub fn matmul_stack_biased(&self, x: &Tensor, w: &Matrix, biases: &[&Tensor]) -> Result<Vec<Tensor>, GpuError> {
        if !biases.is_empty() && (biases.len() != w.stack.len() || biases.iter().zip(&w.stack).any(|(b, &rows)| b.len() != rows)) {
            return Err(shape(format!("{} biases for {:?}", biases.len(), w)));
        }
        if w.stack.len() == 1 {
            let y = self.matmul(x, w)?;
            return Ok(vec![match biases.first() {
                Some(b) => self.add_bias(&y, b)?,
                None => y,
            }]);
        }
        if x.width != w.cols || w.parts.len() != 1 || w.paired {
            return Err(shape(format!("{}×{} times {:?}ᵀ", x.n, x.width, w)));
        }
        let outs: Vec<Tensor> = w.stack.iter().map(|&rows| self.tensor(x.n, rows)).collect();
        // A two-matrix stack writes nothing to the third output, and an unbiased one reads
        // no bias; the bindings still need buffers (apart: one is written, one read).
        let (placeholder, no_bias) = (self.tensor(1, 4), self.tensor(1, 4));
        let third = outs.get(2).unwrap_or(&placeholder);
        let bias = |i: usize| biases.get(i).copied().unwrap_or(&no_bias);
        let split1 = w.stack[0];
        let split2 = w.stack[..2].iter().sum::<usize>();
        let (plain, tiled) = match &w.second {
            Some(second) => (&second.kernels.matmul_split, &second.kernels.matmul_tiled_split),
            None => (&w.kernels.matmul_split, &w.kernels.matmul_tiled_split),
        };
        let (kernel, tokens, rows) = if x.n > MATMUL_TOKENS { (tiled, TILED, TILED) } else { (plain, MATMUL_TOKENS, MATMUL_ROWS) };
        let (gx, gy) = grid(w.rows.div_ceil(rows));
        let (second, second_at, row_bytes_b) = match &w.second {
            Some(s) => (s.row, s.at, s.row_bytes),
            None => (w.rows, 0, 0),
        };
        let params = [
            u(w.rows)?,
            u(w.cols)?,
            u(x.n)?,
            u(w.row_bytes)?,
            u(w.rows)?,
            Word::U(0),
            u(split1)?,
            u(split2)?,
            Word::U(0),
            u(second)?,
            u(second_at)?,
            u(row_bytes_b)?,
            Word::U(u32::from(!biases.is_empty())),
        ];
        self.dispatch(
            kernel,
            &params,
            &[
                (1, Bind::Buffer(&w.parts[0].buffer)),
                (2, Bind::Buffer(x.buffer())),
                (3, Bind::Buffer(outs[0].buffer())),
                (4, Bind::Buffer(outs[1].buffer())),
                (5, Bind::Buffer(third.buffer())),
                (6, Bind::Buffer(bias(0).buffer())),
                (7, Bind::Buffer(bias(1).buffer())),
                (8, Bind::Buffer(bias(2).buffer())),
            ],
            (gx, gy, x.n.div_ceil(tokens) as u32),
        )?;
        Ok(outs)
    }

    /// Uploads a gate and an up projection (`rows` rows of `cols` values each, stored as
    /// `format`) as one pair for [`Gpu::matmul_gated`]. Refused where the pair would not
    /// fit one binding; the caller then keeps them apart.
    pub fn gate_up_matrix(&self, format: Format, rows: usize, cols: usize, gate: &[u8], up: &[u8]) -> Result<Matrix, GpuError> {
        let row_bytes = format.row_bytes(cols).filter(|&b| b * rows == gate.len() && gate.len() == up.len()).ok_or_else(|| {
            shape(format!("{} and {} bytes for {rows} rows of {cols} {} values", gate.len(), up.len(), format.name()))
        })?;
        let bytes: Vec<u8> =
            gate.chunks_exact(row_bytes).zip(up.chunks_exact(row_bytes)).flat_map(|(g, u)| g.iter().chain(u).copied()).collect();
        let mut m = self.matrix(format, 2 * rows, cols, &bytes)?;
        if m.parts.len() != 1 {
            return Err(GpuError::Unsupported(format!("a gate and up pair of {} bytes exceeds a binding", bytes.len())));
        }
        m.stack = vec![rows, rows];
        m.paired = true;
        Ok(m)
    }

    /// `gate(x · Gᵀ) · (x · Uᵀ)` for a pair from [`Gpu::gate_up_matrix`], in one dispatch:
    /// `(n, cols)` to `(n, rows)`.
    pub fn matmul_gated(&self, x: &Tensor, w: &Matrix, gate: Gate) -> Result<Tensor, GpuError> {
        if x.width != w.cols || !w.paired || w.parts.len() != 1 || w.second.is_some() {
            return Err(shape(format!("{}×{} through the gate of {:?}", x.n, x.width, w)));
        }
        let rows = w.rows / 2;
        let out = self.tensor(x.n, rows);
        let (kernel, tokens, per_group) = if x.n > MATMUL_TOKENS {
            (&w.kernels.matmul_tiled_gated, TILED, TILED)
        } else {
            (&w.kernels.matmul_gated, MATMUL_TOKENS, MATMUL_ROWS)
        };
        let (gx, gy) = grid(w.rows.div_ceil(per_group));
        let params =
            [
                u(w.rows)?,
                u(w.cols)?,
                u(x.n)?,
                u(w.row_bytes)?,
                u(rows)?,
                Word::U(0),
                Word::U(0),
                Word::U(0),
                Word::U(gate.number()),
                u(w.rows)?,
                Word::U(0),
                Word::U(0),
                Word::U(0),
            ];
        self.dispatch(
            kernel,
            &params,
            &[(1, Bind::Buffer(&w.parts[0].buffer)), (2, Bind::Buffer(x.buffer())), (3, Bind::Buffer(out.buffer()))],
            (gx, gy, x.n.div_ceil(tokens) as u32),
        )?;
        Ok(out)
    }
}
