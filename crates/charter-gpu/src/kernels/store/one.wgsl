// Where a matrix product's values go: one tensor `y` (n × out_width), of which this
// part of W writes columns row_offset..row_offset + rows.
//
// Composed after a matmul kernel's own file, which declares `p`. Binding: 3 `y`.

@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Rows row..row + count of token t.
fn store_rows(t: u32, row: u32, v: vec4<f32>, count: u32) {
    for (var i = 0u; i < count; i++) {
        y[t * p.out_width + p.row_offset + row + i] = v[i];
    }
}
