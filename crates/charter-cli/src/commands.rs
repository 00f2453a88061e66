//! The subcommands.

use std::io::{BufRead, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use charter_core::catalog::Catalog;
use charter_core::{
    GenerateHooks, GenerateOptions, Message, Reply, SamplingParams, Session, TurnPolicy, Vocabulary, build_prompt,
};
use charter_engine::{LoadOptions, Model};
use charter_threads::Pool;
use serde_json::json;

use crate::constitution::{Layers, labels, with_system_block};
use crate::{LayerArgs, ModelArgs, RunArgs, SamplingArgs, store};

/// Writes to stdout; a closed pipe (`charter … | head`) ends the program quietly
/// instead of panicking.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("charter: error: writing output: {e}");
        std::process::exit(1);
    }
}

macro_rules! outln {
    () => { out("\n") };
    ($($arg:tt)*) => { out(&format!("{}\n", format_args!($($arg)*))) };
}

/// KV cache memory the CLI allows a model's window (`charter_core::window`): a machine
/// that runs the CLI has room, but a window past the profile's is never taken.
const CACHE_BUDGET_BYTES: u64 = 2 << 30;

/// One thread per core, as far as the system says.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The thread count of `--threads` (one count outside `charter bench`).
fn thread_count(args: &ModelArgs) -> anyhow::Result<usize> {
    match args.threads[..] {
        [] => Ok(cores()),
        [0] => bail!("--threads 0: at least one thread runs the model"),
        [n] => Ok(n),
        _ => bail!("--threads takes one count here; `charter bench` takes a list"),
    }
}

fn load(args: &ModelArgs) -> anyhow::Result<Model> {
    load_with_window(args).map(|(model, _)| model)
}

/// The pool `--threads` asks for (none for one thread).
fn pool_for(args: &ModelArgs) -> anyhow::Result<Option<Rc<Pool>>> {
    Ok(match thread_count(args)? {
        1 => None,
        n => Some(Rc::new(Pool::native(n)?)),
    })
}

/// The model, with its window chosen as the app chooses one, and why it is that long.
fn load_with_window(args: &ModelArgs) -> anyhow::Result<(Model, String)> {
    load_on(args, pool_for(args)?)
}

/// [`load_with_window`] with the CPU kernels' threads given.
fn load_on(args: &ModelArgs, threads: Option<Rc<Pool>>) -> anyhow::Result<(Model, String)> {
    let path = store::resolve(args.model.as_deref())?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let facts = Model::window_facts(&bytes).with_context(|| format!("loading {}", path.display()))?;
    let window = charter_core::window::for_model(
        &charter_core::constitution::Constitution::builtin()?,
        facts.name.as_deref().unwrap_or(""),
        &facts.architecture,
        args.context,
        facts.train_context,
        facts.kv_bytes_per_token,
        CACHE_BUDGET_BYTES,
    );
    let options = LoadOptions { context_length: Some(window.tokens), backend: args.backend, threads };
    let mut model = Model::load_owned(bytes, &options).with_context(|| format!("loading {}", path.display()))?;
    model.template.set_now(unix_now());
    Ok((model, window.describe(facts.train_context, facts.kv_bytes_per_token)))
}

/// How many shapes of product the pool's governor runs at each thread count now.
fn products_by_threads(pool: &Pool) -> std::collections::BTreeMap<usize, usize> {
    let mut by = std::collections::BTreeMap::new();
    for (_, k, _) in pool.report() {
        *by.entry(k).or_insert(0) += 1;
    }
    by
}

/// `charter bench`: the speed test at each thread count asked for.
pub fn bench(args: &ModelArgs, plan: Option<&Path>, print_plan: bool, json: bool) -> anyhow::Result<()> {
    let mut counts = args.threads.clone();
    if counts.is_empty() {
        counts = vec![1, cores()];
        counts.dedup();
    }
    if counts.contains(&0) {
        bail!("--threads 0: at least one thread runs the model");
    }
    for (i, &n) in counts.iter().enumerate() {
        if i > 0 && !json {
            outln!();
        }
        bench_at(&ModelArgs { threads: vec![n], ..args.clone() }, plan, print_plan, json)?;
        if print_plan {
            break;
        }
    }
    Ok(())
}

/// The speed test on one thread count.
fn bench_at(args: &ModelArgs, plan: Option<&Path>, print_plan: bool, json: bool) -> anyhow::Result<()> {
    // The file once, untimed: a load from storage, not from a cold disk.
    let path = store::resolve(args.model.as_deref())?;
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let pool = pool_for(args)?;
    let started = Instant::now();
    let (model, _) = load_on(args, pool.clone())?;
    let load_seconds = started.elapsed().as_secs_f64();
    let plan = match plan {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not a speed-test plan", path.display()))?
        }
        None => {
            let block = Layers::new(None, None)?.compose(&model.tokenizer, &model.info)?;
            charter_core::bench::BenchPlan::chat(&model.template, &model.tokenizer, &block.text)?
        }
    };
    if print_plan {
        // The same prompts as text too, for engines that take no token ids (wllama):
        // template markers stay their text, which such an engine reads back as the same
        // control tokens, and a leading BOS is left to the engine where the model adds it.
        let text = |ids: &[u32]| {
            let ids = match ids.split_first() {
                Some((&first, rest)) if model.tokenizer.add_bos && Some(first) == model.tokenizer.bos => rest,
                _ => ids,
            };
            let bytes: Vec<u8> = ids.iter().flat_map(|&id| Vocabulary::token_bytes(&model.tokenizer, id).to_vec()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let prefill: serde_json::Map<String, serde_json::Value> =
            plan.prefill.iter().map(|&n| (n.to_string(), text(&plan.prompt[..n]).into())).collect();
        let whole: Vec<u32> = plan.context.iter().chain(&plan.turn).copied().collect();
        let mut value = serde_json::to_value(&plan)?;
        value["texts"] = json!({ "prefill": prefill, "context": text(&plan.context), "second_turn": text(&whole) });
        outln!("{value}");
        return Ok(());
    }
    let engine = model.decoder.describe();
    let mut session = Session::new(model.decoder);
    let clock = Instant::now();
    let result = pollster::block_on(session.measure_async(&plan, &mut || clock.elapsed().as_secs_f64()))?;
    // Whole launches: every decode step of a plan takes the same number.
    let dispatches_per_token = result.dispatches_per_token.map(|d| d.round() as u64);
    let peak_rss_bytes = peak_rss();
    let ms_per_token = 1e3 / result.decode_tokens_per_s();
    if json {
        let figures = json!({
            "engine": engine,
            "threads": thread_count(args)?,
            "products_by_threads": pool.as_ref().map(|p| products_by_threads(p)),
            "load_seconds": load_seconds,
            "result": result,
            "ms_per_token": ms_per_token,
            "dispatches_per_token": dispatches_per_token,
            "peak_rss_bytes": peak_rss_bytes,
        });
        outln!("{figures}");
        return Ok(());
    }
    outln!("{engine}: loaded in {load_seconds:.2} s");
    for p in &result.prefill {
        outln!("prefill of {} fresh tokens: {:.1} tokens/s", p.tokens, p.tokens as f64 / p.seconds);
    }
    outln!(
        "decode of {} tokens: {:.1} tokens/s ({ms_per_token:.1} ms per token)",
        result.decode_tokens,
        result.decode_tokens_per_s()
    );
    if let Some(n) = dispatches_per_token {
        outln!("dispatches per decoded token: {n}");
    }
    if let Some(p) = &pool {
        let report = p.report();
        let (probes, changes) = report.iter().fold((0, 0), |(p, c), (_, _, n)| (p + n.probes, c + n.changes));
        let counts: Vec<String> = products_by_threads(p).iter().map(|(k, n)| format!("{n} on {k}")).collect();
        outln!(
            "shapes of product at the end, by threads: {} ({probes} probes, {changes} changes)",
            counts.join(", ")
        );
    }
    outln!("second turn of {} tokens: first token after {:.3} s", result.turn_tokens, result.turn_seconds);
    if let Some(rss) = peak_rss_bytes {
        outln!("peak memory: {:.0} MB", rss as f64 / 1e6);
    }
    Ok(())
}

/// The process's peak resident memory, where the system tells it (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn options(s: &SamplingArgs, raw: bool) -> GenerateOptions {
    let sampling = SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repetition_penalty: s.repeat_penalty,
        seed: s.seed,
        ..SamplingParams::default()
    };
    GenerateOptions { sampling, max_tokens: s.max_tokens, raw }
}

/// Streams text to stdout; the clock is `Instant`. In `chat`, Ctrl-C sets `cancel`.
struct Terminal {
    start: Instant,
    stream: bool,
    cancel: Option<&'static AtomicBool>,
}

impl GenerateHooks for Terminal {
    fn on_text(&mut self, text: &str) {
        if self.stream {
            out(text);
        }
    }

    fn now(&mut self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn is_cancelled(&mut self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Set by Ctrl-C while a reply streams; Ctrl-C at the prompt leaves.
static CANCEL: AtomicBool = AtomicBool::new(false);
static GENERATING: AtomicBool = AtomicBool::new(false);

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let messages: Vec<Message> = match (&args.messages, &args.prompt) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not a JSON array of messages", file.display()))?
        }
        (None, Some(prompt)) => {
            let mut m = Vec::new();
            if let Some(system) = &args.system {
                m.push(Message::system(system.clone()));
            }
            m.push(Message::user(prompt.clone()));
            m
        }
        (None, None) => bail!("give --prompt or --messages"),
    };
    let model = load(&args.model)?;
    let messages = if args.constitution {
        let layers = Layers::new(args.layers.operator.as_deref(), args.layers.budget)?;
        with_system_block(&layers.compose(&model.tokenizer, &model.info)?, messages)?
    } else {
        if args.layers.operator.is_some() || args.layers.budget.is_some() {
            bail!("--operator and --budget go with --constitution");
        }
        messages
    };
    let prompt = build_prompt(&model.template, &model.tokenizer, &messages, true)?;
    let policy = model.policy.clone().with_stop_strings(args.sampling.stop.iter().cloned());
    let mut session = Session::new(model.decoder);
    let mut hooks = Terminal { start: Instant::now(), stream: !args.json, cancel: None };
    let reply = session.generate(&prompt.ids, &model.tokenizer, &policy, &options(&args.sampling, args.raw), &mut hooks)?;
    if args.json {
        outln!("{}", serde_json::to_string(&reply_json(&prompt.ids, &reply, args.raw))?);
    } else {
        outln!();
        eprintln!("[{}]", footer(&reply));
    }
    Ok(())
}

fn reply_json(prompt_ids: &[u32], reply: &Reply, raw: bool) -> serde_json::Value {
    json!({
        "prompt_ids": prompt_ids,
        "ids": reply.ids,
        "text": reply.text,
        "stop_reason": reply.stop_reason.as_str(),
        "stop_string": reply.stop_string,
        "raw": raw,
        "prompt_tokens": reply.stats.prompt_tokens,
        "reused_tokens": reply.stats.reused_tokens,
        "shifted_tokens": reply.stats.shifted_tokens,
        "prefill_tokens": reply.stats.prefill_tokens,
        "prefill_tokens_per_s": reply.stats.prefill_tokens_per_s(),
        "decode_tokens_per_s": reply.stats.decode_tokens_per_s(),
        "first_token_seconds": reply.stats.first_token_seconds,
    })
}

fn footer(reply: &Reply) -> String {
    format!(
        "{}; {} tokens, {:.1} tok/s; prompt {} tokens ({} reused{}), {:.1} tok/s",
        reply.stop_reason.as_str(),
        reply.ids.len(),
        reply.stats.decode_tokens_per_s(),
        reply.stats.prompt_tokens,
        reply.stats.reused_tokens,
        match reply.stats.shifted_tokens {
            0 => String::new(),
            n => format!(", {n} of them moved down by a context shift"),
        },
        reply.stats.prefill_tokens_per_s(),
    )
}

pub fn chat(args: &ModelArgs, sampling: &SamplingArgs, layers: Option<&LayerArgs>) -> anyhow::Result<()> {
    let model = load(args)?;
    let (system, reserve) = match layers {
        Some(l) => {
            let layers = Layers::new(l.operator.as_deref(), l.budget)?;
            let block = layers.compose(&model.tokenizer, &model.info)?;
            (Some(Message::system(block.text)), layers.reply_reserve(&model.info))
        }
        None => (None, 0),
    };
    let policy = model.policy.clone().with_stop_strings(sampling.stop.iter().cloned());
    let options = options(sampling, false);
    let name = model.info.name.clone().unwrap_or_else(|| model.info.architecture.clone());
    eprintln!(
        "Charter, on {name} ({} positions of context). Ctrl-C stops a reply, /new starts over, /quit or Ctrl-D leaves.",
        model.info.context_length
    );
    ctrlc::set_handler(|| {
        if GENERATING.load(Ordering::Relaxed) {
            CANCEL.store(true, Ordering::Relaxed);
        } else {
            eprintln!();
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    // What every conversation starts with, counted as the worker counts it: a cache
    // that shares only this holds no conversation to continue.
    let opening = |text: &str| {
        let m: Vec<Message> = system.iter().cloned().chain([Message::user(text)]).collect();
        build_prompt(&model.template, &model.tokenizer, &m, true).map(|p| p.ids).unwrap_or_default()
    };
    let shared = opening("a").iter().zip(&opening("b")).take_while(|(a, b)| a == b).count();
    let mut session = Session::new(model.decoder);
    let mut messages: Vec<Message> = Vec::new();
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let input = line.trim_end_matches(['\n', '\r']);
        match input.trim() {
            "" => continue,
            "/quit" | "/exit" => return Ok(()),
            "/new" => {
                messages.clear();
                eprintln!("(new conversation)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(input));
        // The conversation as the model sees it: the system block, then as many of the
        // latest exchanges as leave room for a reply.
        let mut view: Vec<Message> = system.iter().cloned().chain(messages.iter().cloned()).collect();
        let window = charter_core::history::Window {
            capacity: model.info.context_length,
            reserve,
            cached: session.cached_tokens(),
            shared,
        };
        let dropped = charter_core::history::fit_to_window(&mut view, &window, |m| {
            build_prompt(&model.template, &model.tokenizer, m, true).map(|p| p.ids)
        });
        let prompt = build_prompt(&model.template, &model.tokenizer, &view, true)?;
        if dropped > 0 {
            eprintln!("(the {dropped} oldest messages are out of the model's view)");
            // Move the rest of the history down in the cache rather than read it again.
            session.shift_for(&prompt.ids);
        }
        let mut hooks = Terminal { start: Instant::now(), stream: true, cancel: Some(&CANCEL) };
        CANCEL.store(false, Ordering::Relaxed);
        GENERATING.store(true, Ordering::Relaxed);
        let result = session.generate(&prompt.ids, &model.tokenizer, &policy, &options, &mut hooks);
        GENERATING.store(false, Ordering::Relaxed);
        match result {
            Ok(reply) => {
                outln!();
                eprintln!("[{}]", footer(&reply));
                messages.push(Message::assistant(reply.text));
            }
            Err(e) => {
                // The conversation stays as it was; the user can try again or start over.
                messages.pop();
                eprintln!("charter: error: {e:#}");
                if matches!(e, charter_core::GenerateError::PromptTooLong { .. }) {
                    eprintln!("charter: the conversation no longer fits the context; /new starts a fresh one");
                }
            }
        }
    }
}

pub fn score(args: &ModelArgs, ids_file: &Path) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Input {
        prompt_ids: Vec<u32>,
        ids: Vec<u32>,
    }
    let text = std::fs::read_to_string(ids_file).with_context(|| format!("reading {}", ids_file.display()))?;
    let input: Input = serde_json::from_str(&text)
        .with_context(|| format!("{} is not {{\"prompt_ids\": [...], \"ids\": [...]}}", ids_file.display()))?;
    if input.ids.is_empty() {
        bail!("ids is empty: nothing to score");
    }
    let model = load(args)?;
    let mut session = Session::new(model.decoder);
    let rows = session.score(&input.prompt_ids, &input.ids)?;
    let steps: Vec<serde_json::Value> = rows
        .iter()
        .zip(&input.ids)
        .map(|(logits, &reference)| {
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            let top: Vec<(usize, f32)> = order.iter().take(10).map(|&i| (i, logits[i])).collect();
            json!({
                "argmax": top[0].0,
                "margin": top[0].1 - top.get(1).map_or(top[0].1, |t| t.1),
                "ref_logit": logits.get(reference as usize).copied(),
                "top_logits": top,
            })
        })
        .collect();
    outln!("{}", serde_json::to_string(&json!({ "steps": steps }))?);
    Ok(())
}

pub fn tokenize(args: &ModelArgs, special: bool, jsonl: Option<&Path>, text: Option<&str>, json: bool) -> anyhow::Result<()> {
    let model = load(args)?;
    let tok = &model.tokenizer;
    if let Some(file) = jsonl {
        let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        for (n, line) in std::io::BufReader::new(input).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let row: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("line {} is not JSON", n + 1))?;
            let Some(text) = row.get("text").and_then(|t| t.as_str()) else {
                bail!("line {} has no \"text\" string", n + 1);
            };
            outln!("{}", json!({ "ids": tok.encode(text, special)? }));
        }
        return Ok(());
    }
    let text = text.unwrap_or_default();
    let ids = tok.encode(text, special)?;
    if json {
        let pieces: Vec<&str> = ids.iter().map(|&id| tok.token_text(id).unwrap_or_default()).collect();
        outln!("{}", json!({ "ids": ids, "pieces": pieces }));
    } else {
        for id in ids {
            outln!("{id}\t{:?}", tok.token_text(id).unwrap_or_default());
        }
    }
    Ok(())
}

pub fn inspect(args: &ModelArgs, as_json: bool) -> anyhow::Result<()> {
    let (model, window) = load_with_window(args)?;
    let tok = &model.tokenizer;
    let named = |ids: &mut dyn Iterator<Item = u32>| -> Vec<serde_json::Value> {
        ids.map(|id| json!({ "id": id, "text": tok.token_display(id) })).collect()
    };
    let policy: &TurnPolicy = &model.policy;
    let info = &model.info;
    let report = json!({
        "name": info.name,
        "architecture": info.architecture,
        "parameters": info.n_params,
        "quantization": info.quantization,
        "train_context": info.train_context,
        "context_length": info.context_length,
        "context_reason": window,
        "vocab_size": info.n_vocab,
        "layers": info.n_layers,
        "embedding_length": info.n_embd,
        "bos": info.bos,
        "eos": info.eos,
        "template_source": info.template_source,
        "template": info.template,
        "stop_tokens": named(&mut policy.stop_ids.iter().copied()),
        "end_of_turn": policy.end_of_turn,
        "masked_tokens": named(&mut policy.masked_ids.iter().copied()),
        "stop_strings": policy.stop_strings,
    });
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    outln!("name:           {}", info.name.as_deref().unwrap_or("(none)"));
    outln!("architecture:   {}", info.architecture);
    outln!("parameters:     {:.1}M", info.n_params as f64 / 1e6);
    let quant: Vec<String> = info.quantization.iter().map(|(k, v)| format!("{k}×{v}")).collect();
    outln!("tensors:        {}", quant.join(", "));
    outln!("context:        {} trained, {} allocated: {window}", info.train_context, info.context_length);
    outln!("vocabulary:     {} tokens", info.n_vocab);
    outln!("template:       {:?}", info.template_source);
    let show = |ids: &mut dyn Iterator<Item = u32>| -> String {
        ids.map(|id| format!("{id} {:?}", tok.token_display(id))).collect::<Vec<_>>().join(", ")
    };
    outln!("stop tokens:    {}", show(&mut policy.stop_ids.iter().copied()));
    let n_masked = policy.masked_ids.len();
    outln!(
        "masked tokens:  {n_masked}: {}{}",
        show(&mut policy.masked_ids.iter().copied().take(12)),
        if n_masked > 12 { ", …" } else { "" }
    );
    outln!("stop strings:   {:?}", policy.stop_strings);
    outln!("--- chat template ---\n{}", info.template);
    Ok(())
}

pub fn fetch(ids: &[String], test_models: bool) -> anyhow::Result<()> {
    let catalog = Catalog::builtin()?;
    let mut chosen = Vec::new();
    if test_models {
        chosen.extend(catalog.models.iter().filter(|m| m.package.is_some()));
    }
    for id in ids {
        chosen.push(catalog.get(id).with_context(|| format!("no catalog model {id}"))?);
    }
    if chosen.is_empty() {
        chosen.push(catalog.default_model());
    }
    for m in chosen {
        let path = store::ensure_verified(m)?;
        outln!("{}\t{}", m.id, path.display());
    }
    Ok(())
}

pub fn compose(args: &ModelArgs, layers: &LayerArgs, json: bool) -> anyhow::Result<()> {
    let model = load(args)?;
    let layers = Layers::new(layers.operator.as_deref(), layers.budget)?;
    let composed = layers.compose(&model.tokenizer, &model.info)?;
    if json {
        outln!("{}", serde_json::to_string(&composed)?);
    } else {
        outln!("{}", composed.text);
        let units: Vec<String> = composed.units.iter().map(|u| format!("{} ({}, {})", u.id, u.form.as_str(), u.tokens)).collect();
        eprintln!(
            "[{} tokens; units: {}; operator block: {}]",
            composed.tokens,
            units.join(", "),
            if composed.operator_block { "yes" } else { "no" }
        );
    }
    Ok(())
}

pub fn masks(args: &ModelArgs, conversations: &Path) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Line {
        Wrapped { messages: Vec<Message> },
        Bare(Vec<Message>),
    }
    let model = load(args)?;
    let text = std::fs::read_to_string(conversations).with_context(|| format!("reading {}", conversations.display()))?;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let messages = match serde_json::from_str::<Line>(line)
            .with_context(|| format!("{} line {}: not a conversation", conversations.display(), n + 1))?
        {
            Line::Wrapped { messages } | Line::Bare(messages) => messages,
        };
        let prompt = build_prompt(&model.template, &model.tokenizer, &messages, false)?;
        let labels = labels(&prompt, &messages, &model.policy, &model.tokenizer)
            .with_context(|| format!("{} line {}", conversations.display(), n + 1))?;
        outln!("{}", json!({ "ids": prompt.ids, "labels": labels }));
    }
    Ok(())
}
