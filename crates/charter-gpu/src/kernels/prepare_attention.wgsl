// The step between a layer's q, k and v projections and attention, in one pass: the
// per-head RMS norms of q and k (when `norms` is 1: Qwen3, Gemma 3), rotary
// embeddings of both (pairing (2i, 2i + 1) when `style` is 0, (i, i + half) when 1, as
// rope.wgsl), then k and v into the f16 KV cache at positions start..start + n,
// clamped to the largest finite half and laid out as attention.wgsl reads them. The
// rotated q is written back over q. The arithmetic is rms_norm.wgsl's, rope.wgsl's
// and kv_write's, so this pass and those three give the same values (up to the order
// of one sum).
//
// Composed after reduce.wgsl (`inverse_rms`).
//
// Bindings: 0 `p` (uniform), 1 `table` ((cos, sin) for position · half + i), 2 `q`
// (n × n_heads · head_dim, read and written), 3 `k`, 4 `v` (n × n_kv_heads · head_dim),
// 5 `q_norm`, 6 `k_norm` (head_dim each; any buffer when `norms` is 0), 7 `k_cache`,
// 8 `v_cache` (f16 pairs, [kv head][position][dim]). Eight storage bindings: what
// every WebGPU adapter allows.
// Dispatch: (n_heads + n_kv_heads, n) workgroups of 64. Workgroup (h, t) takes query
// head h of token t or, for h ≥ n_heads, key and value head h − n_heads; invocation j
// owns the rotated pairs j and j + 64 (head_dim ≤ 256).

struct Params {
    n: u32,
    start: u32,
    n_heads: u32,
    n_kv_heads: u32,
    half: u32,
    capacity: u32,
    style: u32,
    norms: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> q_norm: array<f32>;
@group(0) @binding(6) var<storage, read> k_norm: array<f32>;
@group(0) @binding(7) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(8) var<storage, read_write> v_cache: array<u32>;

const F16_MAX: f32 = 65504.0;
const PAIRS: u32 = 2u;

// One rotated key head, staged so the cache's adjacent pairs can be packed from it.
var<workgroup> staged: array<f32, 256>;

// The dimensions of pair i within a head.
fn dims(i: u32) -> vec2<u32> {
    if (p.style == 0u) {
        return vec2<u32>(2u * i, 2u * i + 1u);
    }
    return vec2<u32>(i, i + p.half);
}

fn half_pair(x: vec2<f32>) -> u32 {
    return pack2x16float(clamp(x, vec2<f32>(-F16_MAX), vec2<f32>(F16_MAX)));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let is_q = h < p.n_heads;
    let head_dim = 2u * p.half;
    var base: u32;
    if (is_q) {
        base = (t * p.n_heads + h) * head_dim;
    } else {
        base = (t * p.n_kv_heads + h - p.n_heads) * head_dim;
    }
    var x: array<vec2<f32>, PAIRS>;
    var ss = 0.0;
    for (var c = 0u; c < PAIRS; c++) {
        let i = lid + WG * c;
        if (i < p.half) {
            let d = dims(i);
            var pair: vec2<f32>;
            if (is_q) {
                pair = vec2<f32>(q[base + d.x], q[base + d.y]);
            } else {
                pair = vec2<f32>(k[base + d.x], k[base + d.y]);
            }
            x[c] = pair;
            ss += dot(pair, pair);
        }
    }
    if (p.norms == 1u) {
        let scale = inverse_rms(ss, lid, head_dim, p.eps);
        for (var c = 0u; c < PAIRS; c++) {
            let i = lid + WG * c;
            if (i < p.half) {
                let d = dims(i);
                var w: vec2<f32>;
                if (is_q) {
                    w = vec2<f32>(q_norm[d.x], q_norm[d.y]);
                } else {
                    w = vec2<f32>(k_norm[d.x], k_norm[d.y]);
                }
                x[c] = (x[c] * scale) * w;
            }
        }
    }
    for (var c = 0u; c < PAIRS; c++) {
        let i = lid + WG * c;
        if (i < p.half) {
            let d = dims(i);
            let cs = table[(p.start + t) * p.half + i];
            let a = x[c].x;
            let b = x[c].y;
            let r = vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
            if (is_q) {
                q[base + d.x] = r.x;
                q[base + d.y] = r.y;
            } else {
                staged[d.x] = r.x;
                staged[d.y] = r.y;
            }
        }
    }
    if (is_q) {
        return;
    }
    workgroupBarrier();
    let head = h - p.n_heads;
    let row = (head * p.capacity + p.start + t) * p.half;
    for (var c = 0u; c < PAIRS; c++) {
        let j = lid + WG * c;
        if (j < p.half) {
            k_cache[row + j] = half_pair(vec2<f32>(staged[2u * j], staged[2u * j + 1u]));
            v_cache[row + j] = half_pair(v[base / 2u + j]);
        }
    }
}
