// RMS normalization of each run of `len` values (a whole row, or one head), times the
// weight vector: out = x / sqrt(mean(x²) + eps) · w. `add_rms_norm` first forms the
// residual sum s = a + b, writes it, and normalizes s (one pass instead of two).
// `norm_add_rms_norm` normalizes b by `wb` first (Gemma's norm after each block's
// output): s = a + rms_norm(b) · wb, then out = rms_norm(s) · w.
//
// Composed after reduce.wgsl (`inverse_rms`).
//
// Bindings: 0 `p` (uniform), 1 `w` (len f32), 2 `a` (runs × len), 3 `b` (same; read by
// the two residual entries only), 4 `sum` (same; written by them only), 5 `out`
// (same), 6 `wb` (len f32; read by `norm_add_rms_norm` only, bound by both residual
// entries).
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
@group(0) @binding(6) var<storage, read> wb: array<f32>;

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
    let scale = inverse_rms(ss, lid, p.len, p.eps);
    for (var i = lid; i < p.len; i += WG) {
        out[base + i] = (a[base + i] * scale) * w[i];
    }
}

// Element i (at `at` in the run) of the residual sum: a + b, or with the post-norm
// a + rms_norm(b) · wb (b's scale found first).
fn residual(at: u32, i: u32, scale_b: f32, post_norm: bool) -> f32 {
    if (post_norm) {
        return a[at] + (b[at] * scale_b) * wb[i];
    }
    return a[at] + b[at];
}

// Writes a run's residual sum to `sum` and its RMS norm times `w` to `out`.
fn add_and_norm(run: u32, lid: u32, post_norm: bool) {
    let base = run * p.len;
    var scale_b = 1.0;
    if (post_norm) {
        var ssb = 0.0;
        for (var i = lid; i < p.len; i += WG) {
            let v = b[base + i];
            ssb += v * v;
        }
        scale_b = inverse_rms(ssb, lid, p.len, p.eps);
    }
    var ss = 0.0;
    for (var i = lid; i < p.len; i += WG) {
        let v = residual(base + i, i, scale_b, post_norm);
        sum[base + i] = v;
        ss += v * v;
    }
    let scale = inverse_rms(ss, lid, p.len, p.eps);
    for (var i = lid; i < p.len; i += WG) {
        out[base + i] = (residual(base + i, i, scale_b, post_norm) * scale) * w[i];
    }
}

@compute @workgroup_size(64)
fn add_rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let run = wid.x + wid.y * groups.x;
    if (run < p.runs) {
        add_and_norm(run, lid, false);
    }
}

@compute @workgroup_size(64)
fn norm_add_rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let run = wid.x + wid.y * groups.x;
    if (run < p.runs) {
        add_and_norm(run, lid, true);
    }
}
