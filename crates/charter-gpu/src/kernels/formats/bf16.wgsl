// BF16: eight consecutive bfloat16 values make one group (cols must be a multiple of 8).
const BLOCK_VALUES: u32 = 8u;
const BLOCK_BYTES: u32 = 16u;

fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

fn dequant8(b: u32, g: u32) -> Eight {
    let i = b >> 2u;
    return Eight(
        vec4<f32>(bf16_pair(weights[i]), bf16_pair(weights[i + 1u])),
        vec4<f32>(bf16_pair(weights[i + 2u]), bf16_pair(weights[i + 3u])),
    );
}
