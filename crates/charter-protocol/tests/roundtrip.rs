//! The protocol's wire form: every message survives encode and decode, the version
//! check refuses another build's messages, and garbage is an error, not a panic. The
//! same tests run natively and, through wasm-bindgen-test, in headless Chromium.

use charter_core::constitution::{ComposedUnit, Form, OperatorConfig, UserSettings};
use charter_core::{GenerateOptions, GenerationStats, Message, StopReason};
use charter_protocol::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn requests() -> Vec<Request> {
    vec![
        Request::Download {
            model: ModelRef {
                id: "m".into(),
                name: "M".into(),
                url: "/models/m.gguf".into(),
                size: Some(10),
                sha256: Some("ab".into()),
            },
        },
        Request::Load {
            source: ModelSource::Stored { url: "/models/m.gguf".into() },
            context_length: Some(512),
            backend: BackendPreference::Gpu,
        },
        Request::Load { source: ModelSource::File { name: "x.gguf".into() }, context_length: None, backend: BackendPreference::Auto },
        Request::Generate {
            messages: vec![Message::user("<|im_start|>system\nhi"), Message::assistant("ok")],
            options: GenerateOptions::default(),
            predict_user: true,
        },
        Request::Cancel { target: 7 },
        Request::Configure { operator: None, user: UserSettings::default() },
        Request::Configure {
            operator: Some(OperatorConfig {
                persona: Some("Crumb".into()),
                scope: Some("bread".into()),
                disable: vec!["balanced-views".into()],
                users_may_adjust: vec!["style".into()],
                instructions: "Be brief.".into(),
            }),
            user: UserSettings { disable: vec!["style".into()] },
        },
        Request::ListStored,
        Request::Seal,
        Request::Benchmark { plan: None },
        Request::Benchmark { plan: Some(charter_core::bench::BenchPlan::from_tokens((0..50).collect(), vec![42], 8, 6)) },
        Request::Delete { url: "/models/m.gguf".into() },
        Request::Measure { messages: vec![Message::user("a"), Message::assistant("b"), Message::user("c")], input: 1 },
        Request::ParseOperator { text: "persona = \"Ada\"\n".into() },
    ]
}

fn loaded_model() -> LoadedModel {
    LoadedModel {
        name: "M".into(),
        architecture: "llama".into(),
        context_length: 4096,
        context_reason: "4,096 tokens, as asked (92 MB of cache)".into(),
        template_source: "file".into(),
        stop_tokens: vec![TokenText { id: 2, text: "<|im_end|>".into() }],
        masked_tokens: vec![TokenText { id: 1, text: "<|im_start|>".into() }],
        stop_strings: vec!["<|im_start|>".into()],
        load_seconds: 1.5,
        engine: "cpu (wasm-relaxed-simd)".into(),
        memory_bytes: 200 << 20,
        system_block: Some(SystemBlock { tokens: 120, budget: 384, units: vec![], operator_block: false, restored: false }),
    }
}

fn events() -> Vec<Event> {
    let tok = |id, text: &str, origin| ContextToken { id, text: text.into(), origin, control: id == 1, unit: None };
    vec![
        Event::Ready {
            backend: BackendReport {
                chosen: BackendKind::WasmSimd,
                webgpu_adapter: false,
                webgpu_description: None,
                kernels: "wasm-relaxed-simd".into(),
                reason: "no adapter".into(),
                threads: 2,
                threads_reason: "2 threads".into(),
            },
        },
        Event::Backend {
            backend: BackendReport {
                chosen: BackendKind::WasmSimd,
                webgpu_adapter: true,
                webgpu_description: Some("gpu".into()),
                kernels: "wasm-simd128".into(),
                reason: "fell back".into(),
                threads: 1,
                threads_reason: String::new(),
            },
        },
        Event::Progress { phase: Phase::Downloading, done: 5, total: Some(10) },
        Event::Progress { phase: Phase::Loading, done: 0, total: None },
        Event::Progress { phase: Phase::Compiling, done: 0, total: None },
        Event::Stored { model: StoredModel { url: "u".into(), size: 10, sha256: None } },
        Event::Loaded { model: loaded_model() },
        Event::Restarted { reason: "the GPU was lost".into(), model: loaded_model() },
        Event::Context { tokens: vec![tok(1, "<|im_start|>", Origin::Template), tok(9, "hi", Origin::User)], dropped_messages: 2 },
        Event::Context {
            tokens: vec![ContextToken { id: 5, text: "Be".into(), origin: Origin::System, control: false, unit: Some("hard-limits".into()) }],
            dropped_messages: 0,
        },
        Event::Configured {
            system_block: Some(SystemBlock {
                tokens: 250,
                budget: 256,
                units: vec![ComposedUnit { id: "hard-limits".into(), form: Form::Micro, tokens: 30 }],
                operator_block: true,
                restored: true,
            }),
        },
        Event::Configured { system_block: None },
        Event::Sealed { origin: "https://charter.example".into() },
        Event::Token { text: "Hello \u{1F600}".into() },
        Event::Finished {
            reply: FinishedReply {
                text: "Hello".into(),
                stop_reason: StopReason::EndOfTurn,
                stop_token: Some(TokenText { id: 2, text: "<|im_end|>".into() }),
                stop_string: None,
                tokens: vec![tok(2, "<|im_end|>", Origin::Assistant)],
                context_used: 30,
                stats: GenerationStats { prompt_tokens: 20, decode_tokens: 10, ..Default::default() },
                memory_bytes: 64 << 20,
            },
        },
        Event::StoredList { models: vec![] },
        Event::Measured { total: 300, input: 12, limit: 7680 },
        Event::ParsedOperator { config: OperatorConfig { persona: Some("Ada".into()), ..OperatorConfig::default() } },
        Event::Benchmarked {
            result: charter_core::bench::BenchResult {
                prefill: vec![charter_core::bench::PrefillTime { tokens: 42, seconds: 0.5 }],
                decode_tokens: 128,
                decode_seconds: 2.0,
                turn_tokens: 40,
                turn_seconds: 0.25,
                dispatches_per_token: Some(245.0),
            },
            engine: "cpu (wasm-simd128)".into(),
        },
        Event::Error { error: WorkerError::new(ErrorKind::Quota, "full") },
        Event::Error { error: WorkerError::new(ErrorKind::Config, "may not switch off unit \"hard-limits\"") },
    ]
}

#[test]
fn every_request_and_event_round_trips() {
    for (i, r) in requests().into_iter().enumerate() {
        let env = Envelope::new(i as u64 + 1, r);
        let back: Envelope<Request> = decode(&encode(&env)).expect("decodes");
        assert_eq!(back, env);
    }
    for (i, e) in events().into_iter().enumerate() {
        let env = Envelope::new(i as u64, e);
        let back: Envelope<Event> = decode(&encode(&env)).expect("decodes");
        assert_eq!(back, env);
    }
}

#[test]
fn messages_are_tagged_json_with_the_version() {
    let text = encode(&Envelope::new(3, Request::Cancel { target: 2 }));
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["v"], PROTOCOL_VERSION);
    assert_eq!(value["id"], 3);
    assert_eq!(value["body"]["type"], "cancel");
    assert_eq!(value["body"]["target"], 2);
}

#[test]
fn another_version_is_refused_with_advice() {
    let text = encode(&Envelope::new(1, Request::ListStored)).replacen(&format!("\"v\":{PROTOCOL_VERSION}"), "\"v\":99", 1);
    match decode::<Request>(&text) {
        Err(ProtocolError::Version { got: 99 }) => {}
        other => panic!("expected a version error, got {other:?}"),
    }
    let message = decode::<Request>(&text).expect_err("refused").to_string();
    assert!(message.contains("reload"), "{message}");
}

#[test]
fn garbage_and_unknown_messages_are_errors() {
    let unknown = format!("{{\"v\":{PROTOCOL_VERSION},\"id\":1,\"body\":{{\"type\":\"launch_missiles\"}}}}");
    let bare = format!("{{\"v\":{PROTOCOL_VERSION}}}");
    for text in ["", "null", "{}", bare.as_str(), unknown.as_str(), "\u{0}"] {
        assert!(decode::<Request>(text).is_err(), "{text:?} decoded");
        assert!(decode::<Event>(text).is_err(), "{text:?} decoded");
    }
}
