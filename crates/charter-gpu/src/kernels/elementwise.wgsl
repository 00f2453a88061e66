// Element-wise steps over activations of `len` values: `add` (out = a + b),
// `add_bias` (out = a + b[i mod width]), `scale` (out = a · s), `copy_rows`
// (out = a[i + width]), and the gates of a
// feed-forward block, `gated_silu` (out = silu(a) · b) and `gated_gelu`
// (out = gelu_tanh(a) · b), whose activations come from activation.wgsl, composed
// before this file.
//
// Bindings: 0 `p` (uniform), 1 `a`, 2 `b` (unused by `scale`), 3 `out`.
// Dispatch: (gx, gy) workgroups of 256 with gx · gy · 256 ≥ len; invocation
// i + 256 · (x + y · gx) computes element i + 256 · (x + y · gx).

struct Params {
    len: u32,
    width: u32,
    s: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * groups.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, groups, lid);
    if (i < p.len) {
        out[i] = a[i] + b[i];
    }
}

@compute @workgroup_size(256)
fn add_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, groups, lid);
    if (i < p.len) {
        out[i] = a[i] + b[i % p.width];
    }
}

@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, groups, lid);
    if (i < p.len) {
        out[i] = a[i] * p.s;
    }
}

@compute @workgroup_size(256)
fn gated_silu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, groups, lid);
    if (i < p.len) {
        out[i] = silu(vec4<f32>(a[i])).x * b[i];
    }
}

@compute @workgroup_size(256)
fn gated_gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, groups, lid);
    if (i < p.len) {
        out[i] = gelu_tanh(vec4<f32>(a[i])).x * b[i];
    }
}

// Rows from `width` on: out[i] = a[i + width] (here `width` is the offset in values).
@compute @workgroup_size(256)
fn copy_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, groups, lid);
    if (i < p.len) {
        out[i] = a[i + p.width];
    }
}
