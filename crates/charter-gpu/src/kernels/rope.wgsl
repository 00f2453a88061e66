// Rotary embeddings: rotates each head of rows at positions start..start + n by the
// angles of its position, pairing dimensions (2i, 2i + 1) (`style` 0, llama.cpp's
// "normal" mode) or (i, i + head_dim / 2) (`style` 1, "neox").
//
// Bindings: 0 `p` (uniform), 1 `table` ((cos, sin) for position · half + i), 2 `x`
// (n × n_heads · head_dim), 3 `out` (same shape).
// Dispatch: (gx, gy) workgroups of 256 with gx · gy · 256 ≥ n · n_heads · half; one
// invocation per rotated pair.

struct Params {
    n: u32,
    n_heads: u32,
    half: u32,
    start: u32,
    style: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = (wid.x + wid.y * groups.x) * 256u + lid;
    let per_row = p.n_heads * p.half;
    if (k >= p.n * per_row) {
        return;
    }
    let row = k / per_row;
    let head = (k % per_row) / p.half;
    let i = k % p.half;
    let cs = table[(p.start + row) * p.half + i];
    let base = row * per_row * 2u + head * 2u * p.half;
    var i0: u32;
    var i1: u32;
    if (p.style == 0u) {
        i0 = base + 2u * i;
        i1 = i0 + 1u;
    } else {
        i0 = base + i;
        i1 = i0 + p.half;
    }
    let a = x[i0];
    let b = x[i1];
    out[i0] = a * cs.x - b * cs.y;
    out[i1] = a * cs.y + b * cs.x;
}
