// F16: eight consecutive halves make one group (cols must be a multiple of 8).
const BLOCK_VALUES: u32 = 8u;
const BLOCK_BYTES: u32 = 16u;

fn dequant8(b: u32, g: u32) -> Eight {
    let i = b >> 2u;
    let a = unpack2x16float(weights[i]);
    let c = unpack2x16float(weights[i + 1u]);
    let e = unpack2x16float(weights[i + 2u]);
    let f = unpack2x16float(weights[i + 3u]);
    return Eight(vec4<f32>(a, c), vec4<f32>(e, f));
}
