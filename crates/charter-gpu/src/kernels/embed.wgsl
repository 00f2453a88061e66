// Rows of an embedding table, dequantized: out[i] = W[ids[i]] for the ids that fall in
// this part of the table (rows row_start..row_start + rows); other ids are left to the
// part that holds them.
//
// Composed after formats/common.wgsl and one format file, which supply `dequant8`.
//
// Bindings: 0 `p` (uniform), 1 `weights` (this part's rows, as stored), 2 `ids` (u32,
// the token ids from index ids_at), 3 `out` (n × cols, f32).
// Dispatch: (ceil(cols / 8 / 64), n) workgroups of 64; each invocation writes one group
// of eight values of one row.

struct Params {
    rows: u32,
    cols: u32,
    n: u32,
    row_bytes: u32,
    row_start: u32,
    ids_at: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let u = wid.x * 64u + lid;
    let i = wid.y;
    if (u >= p.cols / 8u || i >= p.n) {
        return;
    }
    let id = ids[p.ids_at + i];
    if (id < p.row_start || id >= p.row_start + p.rows) {
        return;
    }
    let per_block = BLOCK_VALUES / 8u;
    let w = dequant8((id - p.row_start) * p.row_bytes + (u / per_block) * BLOCK_BYTES, u % per_block);
    let at = (i * p.cols + 8u * u) / 4u;
    out[at] = w.lo;
    out[at + 1u] = w.hi;
}
