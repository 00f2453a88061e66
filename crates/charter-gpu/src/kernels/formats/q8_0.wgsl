// Q8_0: 34 bytes for 32 values: an f16 scale, then 32 signed bytes; value = d · q.
const BLOCK_VALUES: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn dequant8(b: u32, g: u32) -> Eight {
    let d = f16_at(b);
    let at = b + 2u + 8u * g;
    return Eight(d * sbytes4(word_at(at)), d * sbytes4(word_at(at + 4u)));
}
