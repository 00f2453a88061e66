// Q6_K: 210 bytes for 256 values: 128 bytes of low nibbles (ql), 64 bytes of 2-bit high
// parts (qh), 16 signed 8-bit scales, then an f16 d. Value 128n + 32k + l (l < 32) takes
// its low four bits from ql[64n + l + 32·(k & 1)] (high nibble when k ≥ 2) and its top
// two from bits 2k..2k+2 of qh[32n + l]; its scale is scales[8n + l/16 + 2k];
// value = d · scale · (q − 32).
const BLOCK_VALUES: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

fn dequant8(b: u32, g: u32) -> Eight {
    let j = 8u * g;
    let n = j / 128u;
    let k = (j % 128u) / 32u;
    let l = j % 32u;
    let sc = f32(bitcast<i32>(byte_at(b + 192u + 8u * n + l / 16u + 2u * k) << 24u) >> 24u);
    let d = f16_at(b + 208u) * sc;
    let ql = b + 64u * n + l + 32u * (k & 1u);
    let qh = b + 128u + 32u * n + l;
    let q = nibbles8(word_at(ql), word_at(ql + 4u), k >= 2u);
    let shift = 2u * k;
    let t0 = bytes4((word_at(qh) >> shift) & 0x03030303u) * 16.0;
    let t1 = bytes4((word_at(qh + 4u) >> shift) & 0x03030303u) * 16.0;
    return Eight(d * (q.lo + t0 - 32.0), d * (q.hi + t1 - 32.0));
}
