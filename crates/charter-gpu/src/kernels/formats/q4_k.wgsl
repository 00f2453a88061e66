// Q4_K: 144 bytes for 256 values: f16 d and dmin, 12 bytes packing eight 6-bit scales
// and minimums, then 128 bytes of nibbles. Values 64c..64c+32 are the low nibbles of
// bytes 32c..32c+32 (sub-block 2c), values 64c+32..64c+64 their high nibbles (2c+1);
// value = d · scale · q − dmin · min.
const BLOCK_VALUES: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

// The 6-bit scale and minimum of sub-block `j` (0..8) of the block at byte `b`.
fn scale_min_k4(b: u32, j: u32) -> vec2<f32> {
    let s = b + 4u;
    if (j < 4u) {
        return vec2<f32>(f32(byte_at(s + j) & 63u), f32(byte_at(s + j + 4u) & 63u));
    }
    let hi = byte_at(s + j + 4u);
    let sc = (hi & 0x0fu) | ((byte_at(s + j - 4u) >> 6u) << 4u);
    let m = (hi >> 4u) | ((byte_at(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn dequant8(b: u32, g: u32) -> Eight {
    let sub = g / 4u;
    let sm = scale_min_k4(b, sub);
    let dl = f16_at(b) * sm.x;
    let ml = f16_at(b + 2u) * sm.y;
    let at = b + 16u + 32u * (sub / 2u) + 8u * (g % 4u);
    let w0 = word_at(at);
    let w1 = word_at(at + 4u);
    if ((sub & 1u) == 0u) {
        return Eight(dl * low_nibbles(w0) - ml, dl * low_nibbles(w1) - ml);
    }
    return Eight(dl * high_nibbles(w0) - ml, dl * high_nibbles(w1) - ml);
}
