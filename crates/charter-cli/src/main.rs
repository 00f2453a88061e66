//! `charter`: Charter on the command line. The same engine and the same turn policy as
//! the browser app, for chatting in a terminal and for checking the engine against
//! reference implementations.

mod commands;
mod constitution;
mod store;

use std::path::PathBuf;

use charter_engine::{BackendChoice, Isa};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "charter", version, about = "Charter: a private assistant that runs on your own machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A GGUF file or a catalog model id (default: the catalog's default model, fetched if missing).
    #[arg(long)]
    model: Option<String>,
    /// KV cache positions to allocate (default: the model's trained context, capped by
    /// Charter's profile for it and by the cache's memory, as in the app).
    #[arg(long)]
    context: Option<usize>,
    /// What runs the model: Charter's CPU kernels (`cpu`, the default), on one
    /// instruction set (`scalar`, `avx2`), Charter's WGSL kernels on the first GPU
    /// adapter (`gpu`), or the candle reference backend (`candle`).
    #[arg(long, default_value = "cpu", value_parser = parse_backend)]
    backend: BackendChoice,
    /// Threads Charter's CPU kernels share matrix products among (default: one per
    /// core). `charter bench` takes a list, `--threads 1,2`, and times each count
    /// (default: 1 and one per core).
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    Ok(match s {
        "cpu" => BackendChoice::Cpu,
        "candle" => BackendChoice::Candle,
        "gpu" => BackendChoice::Gpu,
        "scalar" => BackendChoice::CpuOn(Isa::Scalar),
        "avx2" => BackendChoice::CpuOn(Isa::Avx2),
        other => {
            return Err(format!("{other:?} is not a backend (cpu, scalar, avx2, gpu or candle)"));
        }
    })
}

#[derive(Subcommand)]
enum Command {
    /// Chat interactively, streaming replies and reusing the KV cache across turns.
    /// Charter's constitution is the system block unless --no-constitution is given.
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[command(flatten)]
        layers: LayerArgs,
        /// Chat with the template's own default system text instead of Charter's.
        #[arg(long)]
        no_constitution: bool,
    },
    /// Print the system block Charter composes from its constitution for a model.
    Compose {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        layers: LayerArgs,
        /// Print JSON: text, tokens, units (id, form, tokens), operator_block.
        #[arg(long)]
        json: bool,
    },
    /// Token ids and training labels for conversations: everything but the assistant's
    /// content and its end-of-turn token is masked (-100), with the model's template.
    Masks {
        #[command(flatten)]
        model: ModelArgs,
        /// JSONL: one conversation per line, `{"messages": [...]}` or a bare array.
        conversations: PathBuf,
    },
    /// Generate one reply to messages given as arguments or in a file.
    Run(RunArgs),
    /// Teacher-forced scoring: the model's prediction at every position of given ids.
    /// Time the model on this machine: fresh prefills, greedy decoding, a second turn,
    /// the load, and peak memory (`charter_core::bench`, as the app's speed test).
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// A JSON `BenchPlan` (`prompt`, `prefill`, `decode`, `context`, `turn`) to time
        /// these tokens instead of Charter's own speed test.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Print the speed test's plan as JSON and time nothing (to time other engines on
        /// the same tokens), with each prompt as text too (`texts`).
        #[arg(long)]
        print_plan: bool,
        /// Print JSON: `engine`, `threads`, `load_seconds`, `result`, `ms_per_token`,
        /// `dispatches_per_token` (null off the GPU), `peak_rss_bytes`,
        /// `products_by_threads` (on several threads: how many shapes of product the
        /// governor runs at each count); one line per thread count.
        #[arg(long)]
        json: bool,
    },
    Score {
        #[command(flatten)]
        model: ModelArgs,
        /// JSON file `{"prompt_ids": [...], "ids": [...]}`.
        #[arg(long)]
        ids: PathBuf,
        /// Print JSON (the only output format).
        #[arg(long)]
        json: bool,
    },
    /// Tokenize text with the model's own tokenizer.
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        /// Parse control-token text as control tokens.
        #[arg(long)]
        special: bool,
        /// A JSONL file of `{"text": ...}` lines; prints one `{"ids": [...]}` per line.
        #[arg(long, conflicts_with = "text")]
        jsonl: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The text.
        #[arg(required_unless_present = "jsonl")]
        text: Option<String>,
    },
    /// Describe a model: architecture, size, quantization, template, stop set, masked tokens.
    Inspect {
        #[command(flatten)]
        model: ModelArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download catalog models into the local store.
    Fetch {
        /// Catalog ids (default: the default model).
        ids: Vec<String>,
        /// Every model the test suite uses.
        #[arg(long)]
        test_models: bool,
    },
}

#[derive(Args, Clone)]
struct LayerArgs {
    /// An operator configuration (TOML or JSON; see constitution/README.md).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Tokens for the system block (default: the model profile's cap).
    #[arg(long)]
    budget: Option<usize>,
}

#[derive(Args, Clone)]
struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Sampling temperature; 0 (the default) is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Top-k (0: off).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Top-p.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Min-p.
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// An extra stop string (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The user's message.
    #[arg(long, conflicts_with = "messages", required_unless_present = "messages")]
    prompt: Option<String>,
    /// A system message to put first.
    #[arg(long, requires = "prompt")]
    system: Option<String>,
    /// A JSON array of `{"role", "content"}` messages.
    #[arg(long)]
    messages: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Raw-transcript mode: no masking and no stop at the end of the turn, to see what
    /// the model would write next (including the user's next turn).
    #[arg(long)]
    raw: bool,
    /// Put Charter's constitution (and the --operator block) in front of the messages.
    #[arg(long)]
    constitution: bool,
    #[command(flatten)]
    layers: LayerArgs,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Chat { model, sampling, layers, no_constitution } => {
            commands::chat(&model, &sampling, (!no_constitution).then_some(&layers))
        }
        Command::Compose { model, layers, json } => commands::compose(&model, &layers, json),
        Command::Masks { model, conversations } => commands::masks(&model, &conversations),
        Command::Run(args) => commands::run(&args),
        Command::Score { model, ids, json: _ } => commands::score(&model, &ids),
        Command::Bench { model, plan, print_plan, json } => commands::bench(&model, plan.as_deref(), print_plan, json),
        Command::Tokenize { model, special, jsonl, json, text } => {
            commands::tokenize(&model, special, jsonl.as_deref(), text.as_deref(), json)
        }
        Command::Inspect { model, json } => commands::inspect(&model, json),
        Command::Fetch { ids, test_models } => commands::fetch(&ids, test_models),
    };
    if let Err(err) = result {
        eprintln!("charter: error: {err:#}");
        std::process::exit(1);
    }
}
