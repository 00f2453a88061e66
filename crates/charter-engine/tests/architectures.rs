//! Every supported architecture, on tiny models written here with random `F32` weights:
//! each loads through the same path as a real file, a prompt run in one batch gives the
//! logits that token-by-token decoding gives, sliding windows cut attention where they
//! should, and missing or misshapen tensors are clear errors.

use charter_core::{LanguageModel, Message, Vocabulary, build_prompt};
use charter_engine::gguf::GgufWriter;
use charter_engine::{LoadOptions, Model};

const D: u64 = 32;
const FF: u64 = 48;
const HEADS: u64 = 4;
const KV_HEADS: u64 = 2;
const HEAD_DIM: u64 = 8;

/// A deterministic stream of small pseudo-random weights.
struct Weights(u64);

impl Weights {
    fn take(&mut self, n: u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
            })
            .collect()
    }
}

/// GPT-2's printable stand-ins for bytes.
fn byte_chars() -> Vec<String> {
    let mut bytes: Vec<u32> = (b'!'..=b'~').chain(0xA1..=0xAC).chain(0xAE..=0xFF).map(u32::from).collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut by_byte = vec![String::new(); 256];
    for (b, c) in bytes.into_iter().zip(chars) {
        by_byte[b as usize] = char::from_u32(c).unwrap().to_string();
    }
    by_byte
}

struct Tiny {
    arch: &'static str,
    n_layers: u64,
    window_pattern: Option<u32>,
    skip_tensor: Option<&'static str>,
    rope_freqs: bool,
    context: u32,
}

impl Tiny {
    fn new(arch: &'static str) -> Self {
        Tiny { arch, n_layers: 2, window_pattern: None, skip_tensor: None, rope_freqs: false, context: 256 }
    }

    fn build(&self) -> Vec<u8> {
        let mut w = GgufWriter::new();
        let a = self.arch;
        w.string("general.architecture", a)
            .string("general.name", &format!("tiny {a}"))
            .u32(&format!("{a}.block_count"), self.n_layers as u32)
            .u32(&format!("{a}.embedding_length"), D as u32)
            .u32(&format!("{a}.feed_forward_length"), FF as u32)
            .u32(&format!("{a}.attention.head_count"), HEADS as u32)
            .u32(&format!("{a}.attention.head_count_kv"), KV_HEADS as u32)
            .u32(&format!("{a}.attention.key_length"), HEAD_DIM as u32)
            .u32(&format!("{a}.context_length"), self.context)
            .f32(&format!("{a}.attention.layer_norm_rms_epsilon"), 1e-6)
            .f32(&format!("{a}.rope.freq_base"), 10_000.0);
        let gemma = a == "gemma3";
        if gemma {
            w.u32("gemma3.attention.sliding_window", 4);
            if let Some(p) = self.window_pattern {
                w.u32("gemma3.attention.sliding_window_pattern", p);
            }
        }
        let n_vocab = self.vocab(&mut w, gemma);
        let mut rng = Weights(7);
        let mut tensor = |w: &mut GgufWriter, name: &str, dims: &[u64]| {
            if self.skip_tensor != Some(name) {
                let data = rng.take(dims.iter().product());
                w.tensor_f32(name, dims, &data);
            }
        };
        // Norm weights near one keep activations in range.
        let ones = |w: &mut GgufWriter, name: &str, len: u64| {
            if self.skip_tensor != Some(name) {
                w.tensor_f32(name, &[len], &vec![1.0; len as usize]);
            }
        };
        tensor(&mut w, "token_embd.weight", &[D, n_vocab]);
        ones(&mut w, "output_norm.weight", D);
        if self.rope_freqs {
            w.tensor_f32("rope_freqs.weight", &[HEAD_DIM / 2], &[1.0, 2.0, 4.0, 8.0]);
        }
        let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
        for i in 0..self.n_layers {
            let n = |t: &str| format!("blk.{i}.{t}");
            ones(&mut w, &n("attn_norm.weight"), D);
            tensor(&mut w, &n("attn_q.weight"), &[D, q]);
            tensor(&mut w, &n("attn_k.weight"), &[D, kv]);
            tensor(&mut w, &n("attn_v.weight"), &[D, kv]);
            tensor(&mut w, &n("attn_output.weight"), &[q, D]);
            ones(&mut w, &n("ffn_norm.weight"), D);
            tensor(&mut w, &n("ffn_gate.weight"), &[D, FF]);
            tensor(&mut w, &n("ffn_up.weight"), &[D, FF]);
            tensor(&mut w, &n("ffn_down.weight"), &[FF, D]);
            if a == "qwen2" {
                tensor(&mut w, &n("attn_q.bias"), &[q]);
                tensor(&mut w, &n("attn_k.bias"), &[kv]);
                tensor(&mut w, &n("attn_v.bias"), &[kv]);
            }
            if a == "qwen3" || gemma {
                ones(&mut w, &n("attn_q_norm.weight"), HEAD_DIM);
                ones(&mut w, &n("attn_k_norm.weight"), HEAD_DIM);
            }
            if gemma {
                ones(&mut w, &n("post_attention_norm.weight"), D);
                ones(&mut w, &n("post_ffw_norm.weight"), D);
            }
        }
        w.finish()
    }

    /// A byte-level BPE vocabulary with ChatML markers, or a SentencePiece one with
    /// Gemma's; returns its size.
    fn vocab(&self, w: &mut GgufWriter, gemma: bool) -> u64 {
        let (tokens, types, scores): (Vec<String>, Vec<i32>, Vec<f32>) = if gemma {
            let mut t: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
                .map(String::from)
                .to_vec();
            let mut ty = vec![3, 3, 3, 2, 3, 3];
            t.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
            ty.extend(std::iter::repeat_n(6, 256));
            for piece in ["▁", "a", "b", "ab", "▁a", "\n"] {
                t.push(piece.to_owned());
                ty.push(if piece == "\n" { 4 } else { 1 });
            }
            let scores = (0..t.len()).map(|i| -(i as f32)).collect();
            (t, ty, scores)
        } else {
            let mut t = byte_chars();
            let mut ty = vec![1; 256];
            t.extend(["<|im_start|>".to_owned(), "<|im_end|>".to_owned()]);
            ty.extend([3, 3]);
            (t, ty, Vec::new())
        };
        if gemma {
            w.string("tokenizer.ggml.model", "llama")
                .strings("tokenizer.ggml.tokens", &tokens)
                .f32s("tokenizer.ggml.scores", &scores)
                .i32s("tokenizer.ggml.token_type", &types)
                .u32("tokenizer.ggml.bos_token_id", 2)
                .u32("tokenizer.ggml.eos_token_id", 1)
                .bool("tokenizer.ggml.add_space_prefix", false);
        } else {
            w.string("tokenizer.ggml.model", "gpt2")
                .string("tokenizer.ggml.pre", "qwen2")
                .strings("tokenizer.ggml.tokens", &tokens)
                .strings("tokenizer.ggml.merges", &[])
                .i32s("tokenizer.ggml.token_type", &types)
                .u32("tokenizer.ggml.eos_token_id", 257)
                .string(
                    "tokenizer.chat_template",
                    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
                );
        }
        tokens.len() as u64
    }
}

fn load(bytes: &[u8]) -> Model {
    Model::load(bytes, &LoadOptions { context_length: Some(64), ..Default::default() }).unwrap()
}

/// Logits of the last token: all at once, in two chunks, and one token at a time.
fn consistency(model: &mut Model, tokens: &[u32]) -> f32 {
    let d = &mut model.decoder;
    d.truncate(0);
    let batch = LanguageModel::forward(d, tokens).unwrap();
    d.truncate(0);
    LanguageModel::forward(d, &tokens[..tokens.len() / 2]).unwrap();
    let halves = LanguageModel::forward(d, &tokens[tokens.len() / 2..]).unwrap();
    d.truncate(0);
    let mut single = Vec::new();
    for &t in tokens {
        single = LanguageModel::forward(d, &[t]).unwrap();
    }
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    diff(&batch, &single).max(diff(&batch, &halves))
}

#[test]
fn every_architecture_loads_and_decodes_consistently() {
    for arch in ["llama", "qwen2", "qwen3", "gemma3"] {
        let mut tiny = Tiny::new(arch);
        if arch == "gemma3" {
            tiny.n_layers = 6;
        }
        let mut model = load(&tiny.build());
        assert_eq!(model.info.architecture, arch);
        let prompt = build_prompt(&model.template, &model.tokenizer, &[Message::user("ab ab a")], true).unwrap();
        assert!(prompt.len() > 5, "{arch}: {:?}", prompt.ids);
        let worst = consistency(&mut model, &prompt.ids);
        assert!(worst < 1e-3, "{arch}: batch and incremental logits differ by {worst}");
        // The turn policy comes from the template and the vocabulary, whatever the model.
        let (stop, opener) = if arch == "gemma3" { (5, 4) } else { (257, 256) };
        assert!(model.policy.stop_ids.contains(&stop), "{arch}: {:?}", model.policy.stop_ids);
        assert!(model.policy.masked_ids.contains(&opener), "{arch}: {:?}", model.policy.masked_ids);
    }
}

/// Every architecture on the GPU backend, whose kernels fuse what these models differ
/// in (q/k norms with the rotation, Gemma's norms after each block with the residual
/// add, biases before both): a prompt in one batch and then a token at a time give the
/// CPU's logits (about 2 at most here): within f32 rounding, or where the prefill
/// products' weight tile holds f16 (the adapter has `shader-f16`), within that tile's
/// rounding of each weight (2⁻¹¹ of it) carried through three layers, 0.004 at most on
/// lavapipe.
#[cfg(feature = "gpu")]
#[test]
fn every_architecture_runs_on_the_gpu_as_on_the_cpu() {
    for (arch, without_f16) in ["llama", "qwen2", "qwen3", "gemma3"].into_iter().flat_map(|a| [(a, false), (a, true)]) {
        let mut tiny = Tiny::new(arch);
        tiny.n_layers = 3;
        let bytes = tiny.build();
        let gpu_options = LoadOptions { context_length: Some(64), backend: charter_engine::BackendChoice::Gpu, ..Default::default() };
        let device = charter_gpu::Gpu::new_blocking(charter_gpu::GpuOptions { without_f16, ..Default::default() })
            .unwrap_or_else(|e| panic!("{e}: the GPU tests need an adapter"));
        let tolerance = if device.uses_f16() { 1e-2 } else { 5e-4 };
        let arch = format!("{arch} ({})", device.describe());
        let mut gpu = Model::load_on_gpu(&bytes, &gpu_options, device).unwrap();
        let mut cpu = load(&bytes);
        let prompt: Vec<u32> = (40..61).collect();
        let mut steps = vec![&prompt[..]];
        steps.extend(prompt.chunks(1).take(4));
        for (i, tokens) in steps.into_iter().enumerate() {
            let want = LanguageModel::forward(&mut cpu.decoder, tokens).unwrap();
            let launched = gpu.decoder.dispatches().unwrap();
            let got = LanguageModel::forward(&mut gpu.decoder, tokens).unwrap();
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < tolerance, "{arch}, step {i} ({} tokens): GPU logits {worst} from the CPU's", tokens.len());
            // A decode step: eight dispatches a layer whatever the architecture (biases,
            // q/k norms and post-norms folded in), and for the head the embedding (and
            // Gemma's scale), the last add and norm, the product.
            let dispatches = gpu.decoder.dispatches().unwrap() - launched;
            if tokens.len() == 1 {
                assert!(dispatches <= 8 * 3 + 4, "{arch}, step {i}: {dispatches} dispatches for 3 layers");
            }
        }
    }
}

/// A long prompt on the GPU is several submissions, one per chunk of the prefill, so
/// none runs long enough to trip an operating system's GPU watchdog; a decode step is
/// one.
#[cfg(feature = "gpu")]
#[test]
fn a_long_prompt_is_several_submissions_and_a_decode_step_one() {
    let mut tiny = Tiny::new("llama");
    tiny.context = 1024;
    let options = LoadOptions { context_length: Some(1024), backend: charter_engine::BackendChoice::Gpu, ..Default::default() };
    let mut gpu = Model::load(&tiny.build(), &options).unwrap_or_else(|e| panic!("{e}: the GPU tests need an adapter"));
    let d = &mut gpu.decoder;
    // Three chunks of 256.
    let prompt: Vec<u32> = (0..600).map(|i| 40 + i % 200).collect();
    let before = d.submissions().unwrap();
    let mut logits = Vec::new();
    pollster::block_on(d.forward_async(&prompt, &mut logits)).unwrap();
    let submitted = d.submissions().unwrap() - before;
    assert_eq!(submitted, 3, "submissions for three chunks");
    let before = d.submissions().unwrap();
    pollster::block_on(d.forward_async(&[42], &mut logits)).unwrap();
    assert_eq!(d.submissions().unwrap() - before, 1, "one decode step");
}

#[test]
fn llama_3_frequency_factors_are_applied() {
    let plain = Tiny::new("llama").build();
    let mut scaled = Tiny::new("llama");
    scaled.rope_freqs = true;
    let (mut a, mut b) = (load(&plain), load(&scaled.build()));
    let tokens: Vec<u32> = (40..52).collect();
    let la = LanguageModel::forward(&mut a.decoder, &tokens).unwrap();
    let lb = LanguageModel::forward(&mut b.decoder, &tokens).unwrap();
    assert!(la.iter().zip(&lb).any(|(x, y)| (x - y).abs() > 1e-4), "factors changed nothing");
    assert!(consistency(&mut b, &tokens) < 1e-3);
}

#[test]
fn sliding_window_layers_forget_what_lies_beyond_reach() {
    // Every layer local (the pattern never reaches a global layer), window 4, 2 layers:
    // the last position sees at most 2 × 3 positions back.
    let mut tiny = Tiny::new("gemma3");
    tiny.window_pattern = Some(100);
    let mut model = load(&tiny.build());
    let base: Vec<u32> = (0..20).map(|i| 262 + (i % 4)).collect();
    let last = |model: &mut Model, tokens: &[u32]| {
        model.decoder.truncate(0);
        LanguageModel::forward(&mut model.decoder, tokens).unwrap()
    };
    let reference = last(&mut model, &base);
    let mut far = base.clone();
    far[5] = 265;
    assert_ne!(far, base);
    assert_eq!(last(&mut model, &far), reference, "a token 14 positions back changed the output");
    let mut near = base.clone();
    near[16] = 263;
    assert_ne!(last(&mut model, &near), reference, "a token 3 positions back changed nothing");
    assert!(consistency(&mut model, &base) < 1e-3);

    // With the default pattern, layer 5 attends globally, so the far token matters.
    let mut global = Tiny::new("gemma3");
    global.n_layers = 6;
    let mut model = load(&global.build());
    assert_ne!(last(&mut model, &far), last(&mut model, &base));
}

#[test]
fn missing_or_misshapen_tensors_are_named() {
    let mut tiny = Tiny::new("qwen2");
    tiny.skip_tensor = Some("blk.1.attn_k.bias");
    let err = Model::load(&tiny.build(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("blk.1.attn_k.bias"), "{err}");

    let mut bytes = Tiny::new("llama").build();
    // Claim a wider model than the tensors are.
    let key = b"llama.embedding_length";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    bytes[at..at + 4].copy_from_slice(&64u32.to_le_bytes());
    let err = Model::load(&bytes, &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("token_embd.weight") && err.contains("expected"), "{err}");
}

#[test]
fn gemma_style_vocabulary_uses_byte_fallback() {
    let model = load(&Tiny::new("gemma3").build());
    let ids = model.tokenizer.encode("ab\nz", false).unwrap();
    // `ab`, the user-defined newline, then `z` as its byte.
    assert_eq!(ids, vec![265, 267, 6 + u32::from(b'z')]);
    assert_eq!(model.tokenizer.decode(&ids, false), "ab\nz");
    assert!(model.tokenizer.is_control(4));
}
