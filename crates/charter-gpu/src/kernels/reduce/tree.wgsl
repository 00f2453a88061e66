// A workgroup's reduction through workgroup memory: `workgroup_sum` and `workgroup_max`
// of one value per invocation, returned to every invocation, as a tree of halvings with
// a barrier each (the path for adapters without subgroup operations). Workgroups are of
// `WG` = 64 invocations. Every invocation must call them (they hold barriers); they
// may be called any number of times in a kernel.
//
// Composed before every kernel that reduces across its workgroup; reduce/subgroup.wgsl
// is the same functions on subgroup operations.

const WG: u32 = 64u;

var<workgroup> partial: array<f32, 64>;

fn tree(x: f32, lid: u32, take_max: bool) -> f32 {
    partial[lid] = x;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            if (take_max) {
                partial[lid] = max(partial[lid], partial[lid + s]);
            } else {
                partial[lid] += partial[lid + s];
            }
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Nobody may start the next reduction before everyone has read this one.
    workgroupBarrier();
    return total;
}

fn workgroup_sum(x: f32, lid: u32) -> f32 {
    return tree(x, lid, false);
}

fn workgroup_max(x: f32, lid: u32) -> f32 {
    return tree(x, lid, true);
}
