// Where a matrix product's values go: one tensor `y` (n × out_width), of which this
// part of W writes columns row_offset..row_offset + rows.
//
// Composed after a matmul kernel's own file, which declares `p`. Binding: 3 `y`.

@group(0) @binding(3) var<storage, read_write> y: array<f32>;

fn store(t: u32, row: u32, value: f32) {
    y[t * p.out_width + p.row_offset + row] = value;
}
