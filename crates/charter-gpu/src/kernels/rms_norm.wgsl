// RMS normalization of each run of `len` values (a whole row, or one head), times the
// weight vector: out = x / sqrt(mean(x²) + eps) · w. `add_rms_norm` first forms the
// residual sum s = a + b, writes it, and normalizes s (one pass instead of two).
//
// Bindings: 0 `p` (uniform), 1 `w` (len f32), 2 `a` (runs × len), 3 `b` (same; read by
// `add_rms_norm` only), 4 `sum` (same; written by `add_rms_norm` only), 5 `out` (same).
// Dispatch: (gx, gy) workgroups of 64 with gx · gy ≥ runs; one workgroup per run.

struct Params {
    runs: u32,
    len: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> sum: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;

var<workgroup> partial: array<f32, 64>;

// 1 / sqrt(mean(x²) + eps) of a run, from each invocation's part `ss` of Σ x², added in
// a tree in workgroup memory.
fn inverse_rms(ss: f32, lid: u32) -> f32 {
    partial[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    return 1.0 / sqrt(partial[0] / f32(p.len) + p.eps);
}

@compute @workgroup_size(64)
fn rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let run = wid.x + wid.y * groups.x;
    if (run >= p.runs) {
        return;
    }
    let base = run * p.len;
    var ss = 0.0;
    for (var i = lid; i < p.len; i += WG) {
        let v = a[base + i];
        ss += v * v;
    }
    let scale = inverse_rms(ss, lid);
    for (var i = lid; i < p.len; i += WG) {
        out[base + i] = (a[base + i] * scale) * w[i];
    }
}

@compute @workgroup_size(64)
fn add_rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let run = wid.x + wid.y * groups.x;
    if (run >= p.runs) {
        return;
    }
    let base = run * p.len;
    var ss = 0.0;
    for (var i = lid; i < p.len; i += WG) {
        let v = a[base + i] + b[base + i];
        sum[base + i] = v;
        ss += v * v;
    }
    let scale = inverse_rms(ss, lid);
    for (var i = lid; i < p.len; i += WG) {
        out[base + i] = ((a[base + i] + b[base + i]) * scale) * w[i];
    }
}
