// Q4_0: 18 bytes for 32 values: an f16 scale, then 16 bytes whose low nibbles are values
// 0..16 and high nibbles values 16..32; value = d · (q − 8).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn dequant8(b: u32, g: u32) -> Eight {
    let d = f16_at(b);
    let at = b + 2u + 8u * (g & 1u);
    let q = nibbles8(word_at(at), word_at(at + 4u), g >= 2u);
    return Eight(d * (q.lo - 8.0), d * (q.hi - 8.0));
}
