// A workgroup's reduction on subgroup operations: `workgroup_sum` and `workgroup_max`
// as reduce/tree.wgsl defines them, with two barriers instead of seven. Each subgroup
// reduces in registers (`subgroupAdd`, `subgroupMax`); its first invocation (whatever
// the subgroup size, found with `subgroupBroadcastFirst`) leaves the result in its own
// slot of workgroup memory, the others leave the identity; then every invocation reads
// the 64 slots in the same order, so all hold the same total. On the web the module
// opens with `enable subgroups;` (kernels.rs adds it there; naga refuses it natively,
// where the device's feature is enough).
//
// Composed in place of reduce/tree.wgsl where the device has subgroups.

const WG: u32 = 64u;

var<workgroup> partial: array<f32, 64>;

fn gather(x: f32, lid: u32, take_max: bool) -> f32 {
    let identity = select(0.0, -3.0e38, take_max);
    partial[lid] = select(identity, x, subgroupBroadcastFirst(lid) == lid);
    workgroupBarrier();
    var total = identity;
    for (var j = 0u; j < WG; j++) {
        if (take_max) {
            total = max(total, partial[j]);
        } else {
            total += partial[j];
        }
    }
    // Nobody may start the next reduction before everyone has read this one.
    workgroupBarrier();
    return total;
}

fn workgroup_sum(x: f32, lid: u32) -> f32 {
    return gather(subgroupAdd(x), lid, false);
}

fn workgroup_max(x: f32, lid: u32) -> f32 {
    return gather(subgroupMax(x), lid, true);
}
