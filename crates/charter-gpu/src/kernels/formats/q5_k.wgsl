// Q5_K: 176 bytes for 256 values: f16 d and dmin, 12 bytes of 6-bit scales and
// minimums (as Q4_K), 32 bytes of fifth bits (bit j of byte l is the fifth bit of value
// 32j + l), then 128 bytes of nibbles laid out as Q4_K's; value = d · scale · q − dmin · min.
const BLOCK_VALUES: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

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
    let at = b + 48u + 32u * (sub / 2u) + l;
    let q = nibbles8(word_at(at), word_at(at + 4u), (sub & 1u) != 0u);
    let h0 = k_fifth(word_at(b + 16u + l), sub);
    let h1 = k_fifth(word_at(b + 20u + l), sub);
    return Eight(dl * (q.lo + h0) - ml, dl * (q.hi + h1) - ml);
}
