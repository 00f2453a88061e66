// Q5_1: 24 bytes for 32 values: f16 scale d and minimum m, 32 fifth bits, then 16 bytes
// of low nibbles (values 0..16) and high nibbles (16..32); value = d · q + m.
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 24u;

fn dequant8(b: u32, g: u32) -> Eight {
    let d = f16_at(b);
    let m = f16_at(b + 2u);
    let qh = word_at(b + 4u);
    let at = b + 8u + 8u * (g & 1u);
    let q = nibbles8(word_at(at), word_at(at + 4u), g >= 2u);
    return Eight(d * (q.lo + fifth_bits(qh, 8u * g)) + m, d * (q.hi + fifth_bits(qh, 8u * g + 4u)) + m);
}
