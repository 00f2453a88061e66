// The reduction behind every RMS norm: 1 / sqrt(mean(x²) + eps) of one run of `len`
// values, from each of a workgroup's 64 invocations' part `ss` of Σ x², added in a
// tree in workgroup memory. Every invocation of the workgroup must call it (it holds
// barriers); it may be called more than once in a kernel.
//
// Composed before rms_norm.wgsl and prepare_attention.wgsl.

const WG: u32 = 64u;

var<workgroup> partial: array<f32, 64>;

fn inverse_rms(ss: f32, lid: u32, len: u32, eps: f32) -> f32 {
    partial[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Nobody may start the next reduction before everyone has read this one.
    workgroupBarrier();
    return 1.0 / sqrt(total / f32(len) + eps);
}
