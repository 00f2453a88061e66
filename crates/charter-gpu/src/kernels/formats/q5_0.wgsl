// Q5_0: 22 bytes for 32 values: an f16 scale, 32 fifth bits (bit i for value i), then
// 16 bytes of low nibbles (values 0..16) and high nibbles (16..32); value = d · (q − 16).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn dequant8(b: u32, g: u32) -> Eight {
    let d = f16_at(b);
    let qh = word_at(b + 2u);
    let at = b + 6u + 8u * (g & 1u);
    let q = nibbles8(word_at(at), word_at(at + 4u), g >= 2u);
    return Eight(d * (q.lo + fifth_bits(qh, 8u * g) - 16.0), d * (q.hi + fifth_bits(qh, 8u * g + 4u) - 16.0));
}
