// The activations of a gated feed-forward block, on four values at once: `silu`
// (x · sigmoid(x), Llama and Qwen) and `gelu_tanh` (GELU, tanh approximation, Gemma).
// `activate` picks one by number (0 silu, 1 gelu_tanh), as the kernels' parameters say.
//
// Composed before elementwise.wgsl and store/gated.wgsl, so a gate applied after
// separate products and one applied as the products are stored are the same arithmetic.

// tanh from exp, saturating: the built-in may return NaN where exp overflows.
fn tanh_safe(x: vec4<f32>) -> vec4<f32> {
    let t = exp(-2.0 * min(abs(x), vec4<f32>(20.0)));
    return sign(x) * (1.0 - t) / (1.0 + t);
}

fn silu(g: vec4<f32>) -> vec4<f32> {
    return g / (1.0 + exp(min(-g, vec4<f32>(88.0))));
}

fn gelu_tanh(g: vec4<f32>) -> vec4<f32> {
    return 0.5 * g * (1.0 + tanh_safe(0.7978846 * g * (1.0 + 0.044715 * g * g)));
}

fn activate(g: vec4<f32>, act: u32) -> vec4<f32> {
    if (act == 0u) {
        return silu(g);
    }
    return gelu_tanh(g);
}
