// Where the product with a stack of matrices goes (W's rows are those of two or three
// matrices one after another, as q, k and v, or gate and up, are read from the same
// input): rows 0..split1 to `y`, split1..split2 to `y1`, split2..rows to `y2`, each
// its own n × width tensor. With two matrices split2 = rows and `y2` is a placeholder
// never written. When `p.biased` is 1 each matrix's bias is added as its values are
// stored (Qwen2's q, k and v biases: three dispatches fewer a layer).
//
// Composed after a matmul kernel's own file, which declares `p`. Bindings: 3 `y`,
// 4 `y1`, 5 `y2`, 6 `b`, 7 `b1`, 8 `b2` (the biases, one value per row of each
// matrix; placeholders when `p.biased` is 0).

@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> y1: array<f32>;
@group(0) @binding(5) var<storage, read_write> y2: array<f32>;
@group(0) @binding(6) var<storage, read> b: array<f32>;
@group(0) @binding(7) var<storage, read> b1: array<f32>;
@group(0) @binding(8) var<storage, read> b2: array<f32>;

fn store(t: u32, row: u32, value: f32) {
    let biased = p.biased == 1u;
    if (row < p.split1) {
        y[t * p.split1 + row] = select(value, value + b[row], biased);
    } else if (row < p.split2) {
        let r = row - p.split1;
        y1[t * (p.split2 - p.split1) + r] = select(value, value + b1[r], biased);
    } else {
        let r = row - p.split2;
        y2[t * (p.rows - p.split2) + r] = select(value, value + b2[r], biased);
    }
}

// Rows row..row + count of token t.
fn store_rows(t: u32, row: u32, v: vec4<f32>, count: u32) {
    for (var i = 0u; i < count; i++) {
        store(t, row + i, v[i]);
    }
}
