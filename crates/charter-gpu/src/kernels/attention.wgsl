// Causal attention over a KV cache kept as f16 pairs in 32-bit words, laid out
// head-major ([kv head][position][dim]) like the CPU cache, so saved states move
// between backends unchanged. Composed after one of reduce/*.wgsl (`workgroup_max`,
// `workgroup_sum`, `WG`).
//
// `kv_write` stores keys and values for positions start..start + n (clamped to the
// largest finite half, as the CPU cache does). Bindings: 0 `p`, 1 `k_in`, 2 `v_in`
// (n × n_kv_heads · head_dim, f32), 5 `k_cache`, 6 `v_cache`. Dispatch: (gx, gy)
// workgroups of 64 with gx · gy · 64 ≥ n · n_kv_heads · head_dim / 2; one invocation
// per pair of dimensions.
//
// `attend` computes, for query row i at position start + i and query head h, the
// softmax-weighted sum of the values of every position it sees (causal, and within
// `window` positions when it is non-zero), with scores q·k · scale (soft-capped by
// `softcap` when it is non-zero). Query head h reads key head h / (n_heads / n_kv_heads).
// Bindings: 0 `p`, 3 `q` (n × n_heads · head_dim), 4 `out` (same), 5 `k_cache`,
// 6 `v_cache`. Dispatch: (n_heads, n) workgroups of 64; the workgroup walks the
// visible positions 64 at a time with a running maximum and sum (online softmax),
// invocation j scoring position base + j, then each invocation accumulating the
// dimensions j, j + 64, j + 128, j + 192 it owns (head_dim ≤ 256).

struct Params {
    n: u32,
    start: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    capacity: u32,
    window: u32,
    scale: f32,
    softcap: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> k_in: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> v_in: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>;

const F16_MAX: f32 = 65504.0;
const LOWEST: f32 = -3.0e38;

@compute @workgroup_size(64)
fn kv_write(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = (wid.x + wid.y * groups.x) * WG + lid;
    let pairs = p.head_dim / 2u;
    let per_row = p.n_kv_heads * pairs;
    if (k >= p.n * per_row) {
        return;
    }
    let row = k / per_row;
    let head = (k % per_row) / pairs;
    let pair = k % pairs;
    let at = (head * p.capacity + p.start + row) * pairs + pair;
    k_cache[at] = pack2x16float(clamp(k_in[k], vec2<f32>(-F16_MAX), vec2<f32>(F16_MAX)));
    v_cache[at] = pack2x16float(clamp(v_in[k], vec2<f32>(-F16_MAX), vec2<f32>(F16_MAX)));
}

var<workgroup> qv: array<f32, 256>;
var<workgroup> scores: array<f32, 64>;

fn cache_value(buf_is_k: bool, at: u32) -> f32 {
    var word: u32;
    if (buf_is_k) {
        word = k_cache[at >> 1u];
    } else {
        word = v_cache[at >> 1u];
    }
    let pair = unpack2x16float(word);
    return select(pair.x, pair.y, (at & 1u) != 0u);
}

@compute @workgroup_size(64)
fn attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let i = wid.y;
    let hd = p.head_dim;
    let width = p.n_heads * hd;
    let kh = h / (p.n_heads / p.n_kv_heads);
    let qpos = p.start + i;
    var lo = 0u;
    if (p.window != 0u && qpos + 1u > p.window) {
        lo = qpos + 1u - p.window;
    }
    let hi = qpos + 1u;
    for (var d = lid; d < hd; d += WG) {
        qv[d] = q[i * width + h * hd + d];
    }
    workgroupBarrier();
    let cache_base = kh * p.capacity * hd;
    var m = LOWEST;
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    for (var base = lo; base < hi; base += WG) {
        let pos = base + lid;
        var s = LOWEST;
        if (pos < hi) {
            let kb = cache_base + pos * hd;
            var dotp = 0.0;
            for (var d = 0u; d < hd; d += 2u) {
                let kk = unpack2x16float(k_cache[(kb + d) >> 1u]);
                dotp += qv[d] * kk.x + qv[d + 1u] * kk.y;
            }
            s = dotp * p.scale;
            if (p.softcap != 0.0) {
                let z = s / p.softcap;
                let t = exp(-2.0 * min(abs(z), 20.0));
                s = p.softcap * sign(z) * (1.0 - t) / (1.0 + t);
            }
        }
        let new_m = max(m, workgroup_max(s, lid));
        var e = 0.0;
        if (pos < hi) {
            e = exp(s - new_m);
        }
        scores[lid] = e;
        // Its barriers also make every score visible to every invocation.
        let total = workgroup_sum(e, lid);
        let correction = exp(m - new_m);
        l = l * correction + total;
        m = new_m;
        acc *= correction;
        let count = min(WG, hi - base);
        for (var j = 0u; j < count; j++) {
            let w = scores[j];
            let vb = cache_base + (base + j) * hd;
            for (var c = 0u; c < 4u; c++) {
                let d = lid + c * WG;
                if (d < hd) {
                    acc[c] += w * cache_value(false, vb + d);
                }
            }
        }
        workgroupBarrier();
    }
    for (var c = 0u; c < 4u; c++) {
        let d = lid + c * WG;
        if (d < hd) {
            out[i * width + h * hd + d] = acc[c] / l;
        }
    }
}
