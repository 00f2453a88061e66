// Where the product with a gate and up pair goes: W's rows are the gate's and the
// up projection's interleaved (row 2i is gate row i, row 2i + 1 up row i), so each
// pair of products is one value of the gated feed-forward input, act(gate) · up,
// written to `y` (n × out_width, out_width = rows / 2): the gate's own product is
// never written out. `p.act` picks the activation (activation.wgsl, composed before
// this file). Runs of rows start at multiples of four, so a pair never straddles two.
//
// Composed after a matmul kernel's own file, which declares `p`. Binding: 3 `y`.

@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Rows row..row + count of token t (count even).
fn store_rows(t: u32, row: u32, v: vec4<f32>, count: u32) {
    let g = activate(vec4<f32>(v.x, v.z, 0.0, 0.0), p.act);
    let at = t * p.out_width + row / 2u;
    y[at] = g.x * v.y;
    if (count > 2u) {
        y[at + 1u] = g.y * v.w;
    }
}
