// y = x · Wᵀ for many tokens at once (a prefill): a tile of 32 rows of W by 32 tokens
// per workgroup, walking the row length 32 values at a time. Each step dequantizes the
// tile's 32 × 32 weights once into workgroup memory, loads the tokens' 32 × 32 values
// beside them, and each invocation accumulates a 4 × 4 block of outputs from both; so
// every weight is dequantized once per 32 tokens and read from workgroup memory after.
// Both tiles keep four rows (or four tokens) of one column in a vector, so each column
// of the 4 × 4 block takes two vector reads.
//
// Composed as matmul.wgsl is, after a tile file (tile/f32.wgsl or tile/f16.wgsl: the
// type the weight tile holds) that opens the module: tile, format and rows files, this
// file, then a store file.
//
// Bindings (as matmul.wgsl): 0 `p` (uniform), 1 `weights`, 2 `x` (n × cols, f32),
// 3.. the outputs (see the store file).
// Dispatch: (gx, gy, ceil(n / 32)) workgroups of 64 with gx · gy ≥ ceil(rows / 32);
// workgroup (i, j, t) computes rows 32 · (i + j · gx) .. + 32 for tokens 32t..32t + 32;
// invocation (a, b) = (index / 8, index % 8) the rows 4a..4a + 4 and tokens 4b..4b + 4
// of that tile.

const TILE: u32 = 32u;

// wt[8k + a]: the weights of rows 4a..4a + 4 at column k of the step.
var<workgroup> wt: array<vec4<TileValue>, 256>;
// xt[8k + b]: the values of tokens 4b..4b + 4 at column k of the step.
var<workgroup> xt: array<vec4<f32>, 256>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row0 = (wid.x + wid.y * groups.x) * TILE;
    if (row0 >= p.rows) {
        return;
    }
    let t0 = wid.z * TILE;
    let a = lid / 8u;
    let b = lid % 8u;
    let eights = p.cols / 8u;
    let x_stride = p.cols / 4u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.cols; k0 += TILE) {
        // 32 rows × 4 groups of eight weights: two groups per invocation.
        for (var c = 0u; c < 2u; c++) {
            let i = lid + 64u * c;
            let r = i / 4u;
            let g = i % 4u;
            let u = k0 / 8u + g;
            var w = Eight(vec4<f32>(0.0), vec4<f32>(0.0));
            if (row0 + r < p.rows && u < eights) {
                w = weight8(row0 + r, u);
            }
            let at = 64u * g + r / 4u;
            let lane = r % 4u;
            for (var j = 0u; j < 4u; j++) {
                wt[at + 8u * j][lane] = TileValue(w.lo[j]);
                wt[at + 8u * (j + 4u)][lane] = TileValue(w.hi[j]);
            }
        }
        // 32 tokens × 8 groups of four values: four per invocation.
        for (var c = 0u; c < 4u; c++) {
            let i = lid + 64u * c;
            let t = i / 8u;
            let q = i % 8u;
            var v = vec4<f32>(0.0);
            if (t0 + t < p.n && k0 + 4u * q < p.cols) {
                v = x[(t0 + t) * x_stride + k0 / 4u + q];
            }
            let at = 32u * q + t / 4u;
            let lane = t % 4u;
            for (var j = 0u; j < 4u; j++) {
                xt[at + 8u * j][lane] = v[j];
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE; k++) {
            let xs = xt[8u * k + b];
            let ws = vec4<f32>(wt[8u * k + a]);
            acc[0] += ws.x * xs;
            acc[1] += ws.y * xs;
            acc[2] += ws.z * xs;
            acc[3] += ws.w * xs;
        }
        workgroupBarrier();
    }
    let row = row0 + 4u * a;
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + 4u * b + j;
        if (row < p.rows && t < p.n) {
            store_rows(t, row, vec4<f32>(acc[0][j], acc[1][j], acc[2][j], acc[3][j]), min(4u, p.rows - row));
        }
    }
}
