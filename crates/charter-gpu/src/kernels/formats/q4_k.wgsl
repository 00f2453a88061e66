// Q4_K: 144 bytes for 256 values: f16 d and dmin, 12 bytes packing eight 6-bit scales
// and minimums, then 128 bytes of nibbles. Values 64c..64c+32 are the low nibbles of
// bytes 32c..32c+32 (sub-block 2c), values 64c+32..64c+64 their high nibbles (2c+1);
// value = d · scale · q − dmin · min.
const BLOCK_VALUES: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

fn dequant8(b: u32, g: u32) -> Eight {
    let sub = g / 4u;
    let sm = scale_min_k4(b, sub);
    let dl = f16_at(b) * sm.x;
    let ml = f16_at(b + 2u) * sm.y;
    let at = b + 16u + 32u * (sub / 2u) + 8u * (g % 4u);
    let q = nibbles8(word_at(at), word_at(at + 4u), (sub & 1u) != 0u);
    return Eight(dl * q.lo - ml, dl * q.hi - ml);
}
