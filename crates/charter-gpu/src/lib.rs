//! Charter's GPU kernels: the operations of a transformer step in WGSL, dispatched
//! through `wgpu` (WebGPU in the browser; Vulkan, Metal or DX12 natively, so the same
//! shaders run under `cargo test` on a software adapter such as Mesa's lavapipe).
//!
//! This crate is the device half of the GPU backend: it owns the adapter, uploads
//! weights once as the GGUF bytes they are (no dequantization at load), records every
//! operation into one command encoder and submits only when a result is read back. It
//! knows nothing of models, tokenizers or files; the engine's GPU backend drives it,
//! and the CPU kernels of `charter-kernels` are the reference its tests hold it to.
//!
//! * [`Gpu`]: the device, its limits and features, and the recorder;
//! * [`Tensor`], [`Matrix`], [`KvCache`], [`RopeTable`]: what lives on it;
//! * [`Gpu::stacked_matrix`] and [`Gpu::matmul_stack`]: matrices that read the same
//!   input (q, k, v; gate, up) as one, for one dispatch;
//! * [`Gpu::prepare_attention`], [`Gpu::matmul_gated`], [`Gpu::norm_add_rms_norm`]:
//!   several steps of a layer in one dispatch each, so a layer takes eight;
//! * [`Gpu::shortlist_async`]: the sampler's candidates of a row of logits, computed
//!   where the logits are, so a decode step reads back a few hundred bytes;
//! * `kernels/*.wgsl`: one file per kernel, each opening with what it computes, its
//!   bindings and its dispatch shape; `kernels/formats/*.wgsl` read one GGUF block
//!   format each and are composed into the kernels that read weights.

mod cache;
mod device;
mod fused;
mod kernels;
mod map;
mod ops;
mod pool;
mod readback;
mod record;
mod shortlist;
mod stack;

pub use device::{Gpu, GpuError, GpuOptions};
pub use fused::{QkNorms, Rotary};
pub use kernels::{Shader, shaders};
pub use cache::KvCache;
pub use ops::{Gate, Matrix, Pairing, RopeTable};
pub use pool::Tensor;
pub use shortlist::{MAX_SHORTLIST, ShortlistSpec};
pub use stack::MAX_STACK;
