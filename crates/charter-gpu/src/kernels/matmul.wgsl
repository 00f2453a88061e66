// y = x · Wᵀ for a quantized W read as stored: eight output rows per workgroup, eight
// invocations per row, for a tile of up to eight tokens at once (so a prefill
// dequantizes each weight once per eight tokens, not once per token).
//
// Composed after formats/common.wgsl, a format file (two for a stack in two formats)
// and one of rows/*.wgsl, which supply `weight8` (eight values of a row, dequantized
// from the bytes as stored); and before one of store/*.wgsl, which supplies `store_rows` and the output bindings
// (one tensor; the parts of a stack of matrices; or the gated values of interleaved
// gate and up rows, with `act` naming the activation).
//
// Bindings: 0 `p` (uniform), 1 `weights` (the rows of this part of W, as stored),
// 2 `x` (n × cols, f32), 3.. the outputs (see the store file).
// Dispatch: (gx, gy, ceil(n / 8)) workgroups of 64, with gx · gy ≥ ceil(rows / 8);
// workgroup (i, j, t) computes rows 8 · (i + j · gx) .. + 8 for tokens 8t..8t + 8.
// Invocation (r, l) sums the groups of eight values l, l + 8, … of its row r; the eight
// partial sums of each row and token are added in workgroup memory after one barrier,
// and each run of four rows (starting at a multiple of four) is stored at once.

const ROWS: u32 = 8u;
const LANES: u32 = 8u;
const TOKENS: u32 = 8u;

// partial[(t · ROWS + r) · LANES + l]
var<workgroup> partial: array<f32, 512>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = lid / LANES;
    let l = lid % LANES;
    let row = (wid.x + wid.y * groups.x) * ROWS + r;
    let t0 = wid.z * TOKENS;
    let nt = min(TOKENS, p.n - t0);
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    if (row < p.rows) {
        let eights = p.cols / 8u;
        let x_stride = p.cols / 4u;
        for (var u = l; u < eights; u += LANES) {
            let w = weight8(row, u);
            var xi = t0 * x_stride + 2u * u;
            for (var t = 0u; t < nt; t++) {
                acc[t] += dot(w.lo, x[xi]) + dot(w.hi, x[xi + 1u]);
                xi += x_stride;
            }
        }
    }
    for (var t = 0u; t < nt; t++) {
        partial[(t * ROWS + r) * LANES + l] = acc[t];
    }
    workgroupBarrier();
    // Invocation (q, t), for q < 2, adds token t's eight partial sums of each of the
    // rows 4q..4q + 4 and stores the four together.
    let quad = lid / TOKENS;
    let t = lid % TOKENS;
    let row4 = (wid.x + wid.y * groups.x) * ROWS + 4u * quad;
    if (quad < 2u && t < nt && row4 < p.rows) {
        var s = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i++) {
            let at = (t * ROWS + 4u * quad + i) * LANES;
            var sum = 0.0;
            for (var j = 0u; j < LANES; j++) {
                sum += partial[at + j];
            }
            s[i] = sum;
        }
        store_rows(t0 + t, row4, s, min(4u, p.rows - row4));
    }
}
