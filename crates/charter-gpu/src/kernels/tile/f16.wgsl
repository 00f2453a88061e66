enable f16;

// The prefill product's weight tile holds f16 values (adapters with `shader-f16`): half
// the workgroup memory and half the bytes each step reads from it. Only the weights are
// narrowed: a dequantized weight is a small multiple of its block's f16 scale (rounding
// it costs at most 2⁻¹¹ of its size), while the tokens' values, which can exceed f16's
// range in a feed-forward block, stay f32 as do the sums.
//
// Composed first in every matmul_tiled.wgsl module of this precision (the directive must
// open the module).

alias TileValue = f16;
