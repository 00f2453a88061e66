// The sampler's shortlist of a row of logits, so that only the candidates come back:
// `top_of_logits` sets the masked ids to −∞, applies the repetition penalty to the
// penalized ones (positive logits divided by it, negative ones multiplied), and writes
// the best `keep` of each chunk of 1,024 logits as (logit bits, id) pairs, best first;
// `top_of_pairs` does the same over such pairs, and the host repeats it until one
// chunk remains. Ranking: the larger logit in IEEE total order, ties to the lower id;
// NaN, and with `finite_only` ±∞ too, ranks and is written as −∞. Chunks shorter than
// 1,024 are padded with entries of id 0xffffffff that rank below everything.
//
// All ranking is on integers (a float's bits mapped to an order-preserving u32), so no
// infinity or NaN ever meets a float comparison, which WGSL implementations may assume
// away.
//
// Bindings: 0 `p` (uniform); top_of_logits: 1 `logits`, 2 `list` (the `n_masked`
// masked ids, then the `n_penalized` penalized ones, all distinct); top_of_pairs:
// 4 `pairs`; both: 3 `out` (`keep` pairs per chunk).
// Dispatch: (gx, gy) workgroups of 256 with gx · gy ≥ the number of chunks; workgroup
// x + y · gx sorts chunk x + y · gx in workgroup memory (a bitonic network).

struct Params {
    n: u32,
    keep: u32,
    n_masked: u32,
    n_penalized: u32,
    penalty: f32,
    finite_only: u32,
}

const CHUNK: u32 = 1024u;
const NONE: u32 = 0xffffffffu;
const NEG_INF_BITS: u32 = 0xff800000u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<u32>;
@group(0) @binding(4) var<storage, read> pairs: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> list: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec2<u32>>;

var<workgroup> keys: array<u32, 1024>;
var<workgroup> ids: array<u32, 1024>;

// A float's bits as a u32 that orders as the float does in IEEE total order.
fn ordered(bits: u32) -> u32 {
    if ((bits & 0x80000000u) != 0u) {
        return ~bits;
    }
    return bits | 0x80000000u;
}

fn unordered(key: u32) -> u32 {
    if ((key & 0x80000000u) != 0u) {
        return key & 0x7fffffffu;
    }
    return ~key;
}

// The rank of a logit's bits: NaN (and, with `finite_only`, ±∞) as −∞.
fn rank(bits: u32) -> u32 {
    if ((bits & 0x7f800000u) == 0x7f800000u && ((bits & 0x007fffffu) != 0u || p.finite_only != 0u)) {
        return ordered(NEG_INF_BITS);
    }
    return ordered(bits);
}

fn chunk_index(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * groups.x;
}

// Whether the entry in slot `a` ranks before the one in slot `b`.
fn before(a: u32, b: u32) -> bool {
    return keys[a] > keys[b] || (keys[a] == keys[b] && ids[a] < ids[b]);
}

// Sorts the workgroup's 1,024 entries, best first: 55 stages of 512 compare-exchanges,
// two per invocation.
fn sort(lid: u32) {
    for (var k = 2u; k <= CHUNK; k = k << 1u) {
        for (var j = k >> 1u; j > 0u; j = j >> 1u) {
            for (var r = 0u; r < 2u; r = r + 1u) {
                let t = lid + r * 256u;
                let i = (t / j) * 2u * j + t % j;
                let l = i + j;
                let first = (i & k) == 0u;
                if ((first && before(l, i)) || (!first && before(i, l))) {
                    let key = keys[i];
                    let id = ids[i];
                    keys[i] = keys[l];
                    ids[i] = ids[l];
                    keys[l] = key;
                    ids[l] = id;
                }
            }
            workgroupBarrier();
        }
    }
}

fn write_best(chunk: u32, lid: u32) {
    for (var j = lid; j < p.keep; j = j + 256u) {
        out[chunk * p.keep + j] = vec2<u32>(unordered(keys[j]), ids[j]);
    }
}

@compute @workgroup_size(256)
fn top_of_logits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let chunk = chunk_index(wid, groups);
    if (chunk * CHUNK >= p.n) {
        return;
    }
    let base = chunk * CHUNK;
    // Raw bits first, so the list can change them.
    for (var r = 0u; r < 4u; r = r + 1u) {
        let slot = lid + r * 256u;
        let i = base + slot;
        if (i < p.n) {
            keys[slot] = logits[i];
            ids[slot] = i;
        } else {
            keys[slot] = 0u;
            ids[slot] = NONE;
        }
    }
    workgroupBarrier();
    // The list's ids are distinct, so no two invocations change one slot.
    for (var t = lid; t < p.n_masked + p.n_penalized; t = t + 256u) {
        let id = list[t];
        if (id >= base && id < min(base + CHUNK, p.n)) {
            let slot = id - base;
            if (t < p.n_masked) {
                keys[slot] = NEG_INF_BITS;
            } else {
                let l = bitcast<f32>(keys[slot]);
                keys[slot] = bitcast<u32>(select(l * p.penalty, l / p.penalty, l > 0.0));
            }
        }
    }
    workgroupBarrier();
    for (var r = 0u; r < 4u; r = r + 1u) {
        let slot = lid + r * 256u;
        if (ids[slot] != NONE) {
            keys[slot] = rank(keys[slot]);
        }
    }
    workgroupBarrier();
    sort(lid);
    write_best(chunk, lid);
}

@compute @workgroup_size(256)
fn top_of_pairs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let chunk = chunk_index(wid, groups);
    if (chunk * CHUNK >= p.n) {
        return;
    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        let slot = lid + r * 256u;
        let i = chunk * CHUNK + slot;
        var entry = vec2<u32>(0u, NONE);
        if (i < p.n) {
            entry = pairs[i];
        }
        ids[slot] = entry.y;
        keys[slot] = select(ordered(entry.x), 0u, entry.y == NONE);
    }
    workgroupBarrier();
    sort(lid);
    write_best(chunk, lid);
}
