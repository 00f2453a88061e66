//! Charter's CPU kernels: the arithmetic of a transformer step on GGUF weights, read in
//! place, in portable Rust and in SIMD (WebAssembly SIMD128, relaxed SIMD, x86-64 AVX2).
//!
//! This crate is pure computation over slices: no model files, no tensors, no
//! allocation in the hot paths beyond what a caller's reusable buffers hold, and no
//! dependency on a tensor library. The engine's CPU backend calls it.
//!
//! * [`format`]: the weight formats and their dequantization, the definition of what
//!   the bits mean;
//! * [`q8`]: activations quantized once per row for the integer dot products;
//! * [`dot`]: matrix products, on every instruction set, each equal bit for bit to the
//!   portable one, on one thread or shared by rows among a `charter_threads::Pool`'s;
//! * [`attention`]: causal attention over an `f16` KV cache, on one thread or shared by
//!   key head and tile of queries among a pool's;
//! * [`ops`]: the rest of a step (norms, rotary embeddings, activations, softmax),
//!   with Charter's own `exp` and `tanh`, so every build agrees;
//! * [`reference`]: slow, obviously correct versions the tests hold the kernels to.

pub mod attention;
pub mod dot;
pub mod format;
pub mod half;
pub mod ops;
pub mod q8;
pub mod reference;
mod shared;

pub use dot::{Isa, Matrix, ShapeError, matmul_f, matmul_f_on, matmul_q, matmul_q_on};
pub use format::Format;
pub use q8::{Q8Row, Q8Rows};
