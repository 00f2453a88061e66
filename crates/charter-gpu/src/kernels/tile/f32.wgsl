// The prefill product's weight tile holds f32 values (adapters without `shader-f16`).
//
// Composed first in every matmul_tiled.wgsl module of this precision.

alias TileValue = f32;
