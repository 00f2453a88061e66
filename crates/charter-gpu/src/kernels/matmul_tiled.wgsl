// y = x · Wᵀ for many tokens at once (a prefill): a tile of 32 rows of W by 32 tokens
// per workgroup, walking the row length 32 values at a time. Each step dequantizes the
// tile's 32 × 32 weights once into workgroup memory, loads the tokens' 32 × 32 values
// beside them, and each invocation accumulates a 4 × 4 block of outputs from both; so
// every weight is dequantized once per 32 tokens and read from workgroup memory after.
//
// Composed as matmul.wgsl is: after format and rows files, before a store file.
//
// Bindings (as matmul.wgsl): 0 `p` (uniform), 1 `weights`, 2 `x` (n × cols, f32),
// 3.. the outputs (see the store file).
// Dispatch: (gx, gy, ceil(n / 32)) workgroups of 64 with gx · gy ≥ ceil(rows / 32);
// workgroup (i, j, t) computes rows 32 · (i + j · gx) .. + 32 for tokens 32t..32t + 32;
// invocation (a, b) = (index / 8, index % 8) the rows 4a..4a + 4 and tokens 4b..4b + 4
// of that tile.

const TILE: u32 = 32u;
// Row stride of the tiles in workgroup memory (one spare column against bank conflicts).
const STRIDE: u32 = 33u;

var<workgroup> wt: array<f32, 1056>;
var<workgroup> xt: array<f32, 1056>;

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
            let at = r * STRIDE + 8u * g;
            wt[at] = w.lo.x;
            wt[at + 1u] = w.lo.y;
            wt[at + 2u] = w.lo.z;
            wt[at + 3u] = w.lo.w;
            wt[at + 4u] = w.hi.x;
            wt[at + 5u] = w.hi.y;
            wt[at + 6u] = w.hi.z;
            wt[at + 7u] = w.hi.w;
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
            let at = t * STRIDE + 4u * q;
            xt[at] = v.x;
            xt[at + 1u] = v.y;
            xt[at + 2u] = v.z;
            xt[at + 3u] = v.w;
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE; k++) {
            let xs = vec4<f32>(
                xt[(4u * b) * STRIDE + k],
                xt[(4u * b + 1u) * STRIDE + k],
                xt[(4u * b + 2u) * STRIDE + k],
                xt[(4u * b + 3u) * STRIDE + k],
            );
            for (var i = 0u; i < 4u; i++) {
                acc[i] += wt[(4u * a + i) * STRIDE + k] * xs;
            }
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
