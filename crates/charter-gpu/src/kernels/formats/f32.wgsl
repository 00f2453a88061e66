// F32: eight consecutive 32-bit floats make one group (cols must be a multiple of 8).
const BLOCK_VALUES: u32 = 8u;
const BLOCK_BYTES: u32 = 32u;

fn dequant8(b: u32, g: u32) -> Eight {
    let i = b >> 2u;
    return Eight(
        bitcast<vec4<f32>>(vec4<u32>(weights[i], weights[i + 1u], weights[i + 2u], weights[i + 3u])),
        bitcast<vec4<f32>>(vec4<u32>(weights[i + 4u], weights[i + 5u], weights[i + 6u], weights[i + 7u])),
    );
}
