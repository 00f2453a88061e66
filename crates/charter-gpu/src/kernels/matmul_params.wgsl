// The parameters and inputs every matrix product shares (matmul.wgsl and
// matmul_tiled.wgsl, with the rows and store files around them):
// `rows`, `cols`: this part of W; `n`: tokens; `row_bytes`: bytes per row as stored;
// `out_width`, `row_offset`: where a plain product's columns go (store/one.wgsl);
// `split1`, `split2`: where a stack's matrices end (store/split.wgsl); `act`: the
// activation of a gated pair (store/gated.wgsl); `second`, `second_at`, `row_bytes_b`:
// the rows of a stack in a second format (rows/two.wgsl); `biased`: whether a stack's
// biases are added (store/split.wgsl).
//
// Bindings: 0 `p` (uniform), 1 `weights` (the rows of this part of W, as stored), 2 `x`
// (n × cols, f32, read four values at a time). Composed first among them.

struct Params {
    rows: u32,
    cols: u32,
    n: u32,
    row_bytes: u32,
    out_width: u32,
    row_offset: u32,
    split1: u32,
    split2: u32,
    act: u32,
    second: u32,
    second_at: u32,
    row_bytes_b: u32,
    biased: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
