// A context shift of one layer's KV cache (f16 pairs in 32-bit words, head-major
// [kv head][position][dim], as attention.wgsl keeps it): positions first..after leave,
// the `kept` positions from `after` on move down to `first`, and each moved key is turned
// back by the distance (rotary embeddings are rotations, so the key for position p,
// rotated by -(after - first), is the key for p - (after - first)). Values move bit for bit.
// The definition is charter_kernels::attention::remove_positions.
//
// In two dispatches, since the source and destination ranges overlap and workgroups
// run in no order: `gather` copies the moved keys (turned) and values into `moved_k`
// and `moved_v` (kept × heads × head_dim / 2 words each), `scatter` writes them back
// at `first`. Bindings: 0 `p`, 1 `turn` ((cos, -sin) of the distance's angle per
// frequency, head_dim / 2 of them; `gather` only), 2 `k_cache`, 3 `v_cache`, 4 `moved_k`,
// 5 `moved_v`.
// Dispatch (both): (gx, gy) workgroups of 64 with gx · gy · 64 ≥ kept · heads ·
// head_dim / 4; one invocation per four dimensions of a head (head_dim a multiple of
// 4): two words that hold two rotated pairs, adjacent (`style` 0, llama.cpp's
// "normal" mode) or half a head apart (`style` 1, "neox").

struct Params {
    kept: u32,
    first: u32,
    after: u32,
    heads: u32,
    head_dim: u32,
    capacity: u32,
    style: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> turn: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> moved_k: array<u32>;
@group(0) @binding(5) var<storage, read_write> moved_v: array<u32>;

const F16_MAX: f32 = 65504.0;

struct Quad {
    // The word offsets within a head of the two words this invocation moves.
    lo: u32,
    hi: u32,
    // The position moved (0..kept) and the head.
    pos: u32,
    head: u32,
    valid: bool,
}

fn quad(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> Quad {
    let k = (wid.x + wid.y * groups.x) * 64u + lid;
    let quads = p.head_dim / 4u;
    var q: Quad;
    q.valid = k < p.kept * p.heads * quads;
    let j = k % quads;
    q.head = (k / quads) % p.heads;
    q.pos = k / (quads * p.heads);
    if (p.style == 0u) {
        q.lo = 2u * j;
        q.hi = 2u * j + 1u;
    } else {
        q.lo = j;
        q.hi = j + p.head_dim / 4u;
    }
    return q;
}

// Rotates (a, b) by the angle whose cosine and sine are `cs`, as ops::rope_* do.
fn rotate(a: f32, b: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

fn pack(v: vec2<f32>) -> u32 {
    return pack2x16float(clamp(v, vec2<f32>(-F16_MAX), vec2<f32>(F16_MAX)));
}

@compute @workgroup_size(64)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = quad(wid, groups, lid);
    if (!q.valid) {
        return;
    }
    let words = p.head_dim / 2u;
    let src = (q.head * p.capacity + p.after + q.pos) * words;
    let dst = (q.pos * p.heads + q.head) * words;
    let lo = unpack2x16float(k_cache[src + q.lo]);
    let hi = unpack2x16float(k_cache[src + q.hi]);
    var out_lo: vec2<f32>;
    var out_hi: vec2<f32>;
    if (p.style == 0u) {
        // Words 2j and 2j + 1 hold the pairs of frequencies 2j and 2j + 1.
        out_lo = rotate(lo.x, lo.y, turn[q.lo]);
        out_hi = rotate(hi.x, hi.y, turn[q.hi]);
    } else {
        // Word j holds dimensions 2j, 2j + 1; word j + head_dim / 4 their partners.
        let f = 2u * q.lo;
        let first = rotate(lo.x, hi.x, turn[f]);
        let second = rotate(lo.y, hi.y, turn[f + 1u]);
        out_lo = vec2<f32>(first.x, second.x);
        out_hi = vec2<f32>(first.y, second.y);
    }
    moved_k[dst + q.lo] = pack(out_lo);
    moved_k[dst + q.hi] = pack(out_hi);
    moved_v[dst + q.lo] = v_cache[src + q.lo];
    moved_v[dst + q.hi] = v_cache[src + q.hi];
}

@compute @workgroup_size(64)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = quad(wid, groups, lid);
    if (!q.valid) {
        return;
    }
    let words = p.head_dim / 2u;
    let src = (q.pos * p.heads + q.head) * words;
    let dst = (q.head * p.capacity + p.first + q.pos) * words;
    k_cache[dst + q.lo] = moved_k[src + q.lo];
    k_cache[dst + q.hi] = moved_k[src + q.hi];
    v_cache[dst + q.lo] = moved_v[src + q.lo];
    v_cache[dst + q.hi] = moved_v[src + q.hi];
}
