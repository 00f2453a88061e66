// Byte access to GGUF blocks as the file stores them.
//
// Prepended to every kernel that reads weights. The weights are bound as `weights`, an
// array of little-endian 32-bit words holding the tensor's bytes unchanged (blocks of
// 18, 22, 34 or 210 bytes sit at any byte offset), padded with one spare word so that a
// read of the last bytes never leaves the buffer. Each format file defines
// `BLOCK_VALUES`, `BLOCK_BYTES` and `dequant8(block_byte, group)`: the eight values of
// group `group` of the block starting at byte `block_byte`, from the helpers below
// (unaligned words, halves, nibbles, fifth bits, the k-quants' packed scales).

struct Eight {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The 32 bits starting at byte `at`, at any alignment.
fn word_at(at: u32) -> u32 {
    let i = at >> 2u;
    let shift = (at & 3u) * 8u;
    let low = weights[i];
    if (shift == 0u) {
        return low;
    }
    return (low >> shift) | (weights[i + 1u] << (32u - shift));
}

fn byte_at(at: u32) -> u32 {
    return (weights[at >> 2u] >> ((at & 3u) * 8u)) & 0xffu;
}

// The half at byte `at` (an even offset), as f32.
fn f16_at(at: u32) -> f32 {
    let pair = unpack2x16float(weights[at >> 2u]);
    return select(pair.x, pair.y, (at & 2u) != 0u);
}

// The four bytes of `w` as unsigned values, low byte first.
fn bytes4(w: u32) -> vec4<f32> {
    return vec4<f32>(f32(w & 0xffu), f32((w >> 8u) & 0xffu), f32((w >> 16u) & 0xffu), f32(w >> 24u));
}

// The four bytes of `w` as signed values, low byte first.
fn sbytes4(w: u32) -> vec4<f32> {
    let s = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w));
    return vec4<f32>(s >> vec4<u32>(24u));
}

// The low nibbles of the four bytes of `w`, then their high nibbles.
fn low_nibbles(w: u32) -> vec4<f32> {
    return bytes4(w & 0x0f0f0f0fu);
}

fn high_nibbles(w: u32) -> vec4<f32> {
    return bytes4((w >> 4u) & 0x0f0f0f0fu);
}

// Eight 4-bit values: the low nibbles of the bytes of `w0` then `w1`, or their high
// nibbles when `high`.
fn nibbles8(w0: u32, w1: u32, high: bool) -> Eight {
    if (high) {
        return Eight(high_nibbles(w0), high_nibbles(w1));
    }
    return Eight(low_nibbles(w0), low_nibbles(w1));
}

// The 6-bit scale and minimum of sub-block `j` (0..8) of the Q4_K or Q5_K block at byte
// `b` (whose 12 bytes of packed scales start at b + 4).
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

// Bits `first..first + 4` of `bits`, one per lane, each moved to bit 4 (the fifth bit
// of a 5-bit value) and returned as 0 or 16.
fn fifth_bits(bits: u32, first: u32) -> vec4<f32> {
    let b = (vec4<u32>(bits) >> (vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u);
    return vec4<f32>(b * 16u);
}
