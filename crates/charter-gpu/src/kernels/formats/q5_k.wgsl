// Q5_K: 176 bytes for 256 values: f16 d and dmin, 12 bytes of 6-bit scales and
// minimums (as Q4_K), 32 bytes of fifth bits (bit j of byte l is the fifth bit of value
// 32j + l), then 128 bytes of nibbles laid out as Q4_K's; value = d · scale · q − dmin · min.
const BLOCK_VALUES: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

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

// The fifth bits (0 or 16) of the four values whose high-bit bytes are `w`, for
// sub-block `sub`.
fn k_fifth(w: u32, sub: u32) -> vec4<f32> {
    let b = (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(sub))) & vec4<u32>(1u);
    return vec4<f32>(b * 16u);
}

fn dequant8(b: u32, g: u32) -> Eight {
    let sub = g / 4u;
    let sm = scale_min_k4(b, sub);
    let dl = f16_at(b) * sm.x;
    let ml = f16_at(b + 2u) * sm.y;
    let l = 8u * (g % 4u);
    let h0 = word_at(b + 16u + l);
    let h1 = word_at(b + 20u + l);
    let at = b + 48u + 32u * (sub / 2u) + l;
    let w0 = word_at(at);
    let w1 = word_at(at + 4u);
    var lo: vec4<f32>;
    var hi: vec4<f32>;
    if ((sub & 1u) == 0u) {
        lo = low_nibbles(w0);
        hi = low_nibbles(w1);
    } else {
        lo = high_nibbles(w0);
        hi = high_nibbles(w1);
    }
    return Eight(dl * (lo + k_fifth(h0, sub)) - ml, dl * (hi + k_fifth(h1, sub)) - ml);
}
