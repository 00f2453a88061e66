// The reduction behind every RMS norm: 1 / sqrt(mean(x²) + eps) of one run of `len`
// values, from each invocation's part `ss` of Σ x². Every invocation of the workgroup
// must call it; it may be called more than once in a kernel.
//
// Composed after one of reduce/*.wgsl (`workgroup_sum`, `WG`), before rms_norm.wgsl and
// prepare_attention.wgsl.

fn inverse_rms(ss: f32, lid: u32, len: u32, eps: f32) -> f32 {
    return 1.0 / sqrt(workgroup_sum(ss, lid) / f32(len) + eps);
}
