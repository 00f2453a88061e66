// Q4_1: 20 bytes for 32 values: f16 scale d and minimum m, then 16 bytes whose low
// nibbles are values 0..16 and high nibbles values 16..32; value = d · q + m.
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn dequant8(b: u32, g: u32) -> Eight {
    let d = f16_at(b);
    let m = f16_at(b + 2u);
    let at = b + 4u + 8u * (g & 1u);
    let q = nibbles8(word_at(at), word_at(at + 4u), g >= 2u);
    return Eight(d * q.lo + m, d * q.hi + m);
}
