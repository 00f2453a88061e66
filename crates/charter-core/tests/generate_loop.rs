//! The generation loop against a scripted model: stopping, masking, stop strings,
//! streaming, cancellation, limits and KV reuse, each checked exactly.

use std::collections::BTreeSet;

use charter_core::{
    Candidate, GenerateError, GenerateHooks, GenerateOptions, LanguageModel, ModelError, SamplingParams, Session, Shortlist,
    StopReason, TurnPolicy, VocabError, Vocabulary,
};

const EOT: u32 = 256;
const TURN: u32 = 257;
const BOS: u32 = 258;
const N_VOCAB: usize = 259;

/// Bytes are tokens 0..=255; three control tokens follow.
struct ByteVocab;

impl Vocabulary for ByteVocab {
    fn n_vocab(&self) -> usize {
        N_VOCAB
    }
    fn encode(&self, text: &str, _parse_special: bool) -> Result<Vec<u32>, VocabError> {
        Ok(text.bytes().map(u32::from).collect())
    }
    fn token_bytes(&self, id: u32) -> &[u8] {
        const TEXTS: [&str; 3] = ["<eot>", "<turn>", "<bos>"];
        static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let bytes = BYTES.get_or_init(|| (0..=255u8).collect());
        match id {
            0..=255 => &bytes[id as usize..id as usize + 1],
            _ => TEXTS.get(id as usize - 256).map_or(&[], |t| t.as_bytes()),
        }
    }
    fn is_control(&self, id: u32) -> bool {
        id >= 256
    }
    fn control_tokens(&self) -> Vec<u32> {
        vec![EOT, TURN, BOS]
    }
    fn bos(&self) -> Option<u32> {
        Some(BOS)
    }
    fn eos(&self) -> Option<u32> {
        Some(EOT)
    }
    fn adds_bos(&self) -> bool {
        false
    }
    fn end_of_generation(&self) -> Vec<u32> {
        vec![EOT]
    }
}

/// Wants `script[i]` at the i-th generated position, with `fallback` a close second.
struct Scripted {
    script: Vec<u32>,
    fallback: u32,
    prompt_len: usize,
    capacity: usize,
    cached: usize,
    forwarded: usize,
}

impl Scripted {
    fn new(script: &[u32], prompt_len: usize) -> Self {
        Scripted { script: script.to_vec(), fallback: u32::from(b'x'), prompt_len, capacity: 64, cached: 0, forwarded: 0 }
    }
}

impl LanguageModel for Scripted {
    fn n_vocab(&self) -> usize {
        N_VOCAB
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn n_cached(&self) -> usize {
        self.cached
    }
    fn truncate(&mut self, len: usize) {
        self.cached = self.cached.min(len);
    }
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.cached += tokens.len();
        self.forwarded += tokens.len();
        let step = self.cached.saturating_sub(self.prompt_len);
        let mut logits = vec![0.0; N_VOCAB];
        logits[self.fallback as usize] = 5.0;
        if let Some(&t) = self.script.get(step) {
            logits[t as usize] = 10.0;
        }
        Ok(logits)
    }
}

fn policy(stop_strings: &[&str]) -> TurnPolicy {
    TurnPolicy {
        stop_ids: BTreeSet::from([EOT]),
        masked_ids: BTreeSet::from([TURN, BOS]),
        stop_strings: stop_strings.iter().map(|s| s.to_string()).collect(),
        end_of_turn: Some(EOT),
    }
}

fn bytes(s: &str) -> Vec<u32> {
    s.bytes().map(u32::from).collect()
}

#[derive(Default)]
struct Record {
    pieces: Vec<String>,
    tokens: Vec<u32>,
    cancel_after: Option<usize>,
}

impl GenerateHooks for Record {
    fn on_text(&mut self, text: &str) {
        self.pieces.push(text.to_owned());
    }
    fn on_token(&mut self, id: u32) {
        self.tokens.push(id);
    }
    fn is_cancelled(&mut self) -> bool {
        self.cancel_after.is_some_and(|n| self.tokens.len() >= n)
    }
}

fn options(max_tokens: usize, raw: bool) -> GenerateOptions {
    GenerateOptions { sampling: SamplingParams::greedy(), max_tokens, raw }
}

fn generate(script: &[u32], stops: &[&str], opts: GenerateOptions) -> (charter_core::Reply, Record) {
    let prompt = bytes("Q?");
    let mut session = Session::new(Scripted::new(script, prompt.len()));
    let mut rec = Record::default();
    let reply = session.generate(&prompt, &ByteVocab, &policy(stops), &opts, &mut rec).unwrap();
    (reply, rec)
}

#[test]
fn ends_at_the_end_of_turn_token_and_keeps_it_in_ids() {
    let mut script = bytes("Hi");
    script.extend([EOT, b'U'.into(), b's'.into()]);
    let (reply, rec) = generate(&script, &[], options(50, false));
    assert_eq!(reply.text, "Hi");
    assert_eq!(reply.stop_reason, StopReason::EndOfTurn);
    assert_eq!(reply.ids, vec![u32::from(b'H'), u32::from(b'i'), EOT]);
    assert_eq!(rec.pieces.concat(), "Hi");
}

#[test]
fn masked_tokens_are_never_sampled() {
    // The model's favourite at step 1 opens a turn; the runner-up is taken instead.
    let script = vec![u32::from(b'a'), TURN, BOS, EOT];
    let (reply, _) = generate(&script, &[], options(50, false));
    assert_eq!(reply.text, "axx");
    assert!(!reply.ids.contains(&TURN) && !reply.ids.contains(&BOS));
    assert_eq!(reply.n_masked, 2);
}

#[test]
fn stop_string_across_tokens_is_held_back_and_cut() {
    let script = bytes("ok\nUser: next");
    let (reply, rec) = generate(&script, &["\nUser:"], options(50, false));
    assert_eq!(reply.text, "ok");
    assert_eq!(reply.stop_reason, StopReason::StopString);
    assert_eq!(reply.stop_string.as_deref(), Some("\nUser:"));
    let streamed = rec.pieces.concat();
    assert_eq!(streamed, "ok");
    assert!(rec.pieces.iter().all(|p| !p.contains('\n')));
}

#[test]
fn a_false_alarm_is_released_in_order() {
    let mut script = bytes("a\nUse it");
    script.push(EOT);
    let (reply, rec) = generate(&script, &["\nUser:"], options(50, false));
    assert_eq!(reply.text, "a\nUse it");
    assert_eq!(rec.pieces.concat(), "a\nUse it");
}

#[test]
fn raw_mode_writes_past_the_turn_and_shows_control_tokens() {
    let mut script = bytes("Hi");
    script.extend([EOT, TURN]);
    script.extend(bytes("user"));
    let (reply, _) = generate(&script, &["<turn>"], options(8, true));
    assert_eq!(reply.stop_reason, StopReason::Length);
    assert_eq!(reply.text, "Hi<eot><turn>user");
}

#[test]
fn utf8_split_across_tokens_is_streamed_once_whole() {
    let mut script = bytes("é!");
    script.push(EOT);
    let (reply, rec) = generate(&script, &[], options(50, false));
    assert_eq!(reply.text, "é!");
    assert_eq!(rec.pieces, vec!["é", "!"]);
}

#[test]
fn cancellation_limit_and_full_context() {
    let script = bytes("abcdefghijklmnop");
    let prompt = bytes("Q?");
    let mut session = Session::new(Scripted::new(&script, prompt.len()));
    let mut rec = Record { cancel_after: Some(3), ..Default::default() };
    let reply = session.generate(&prompt, &ByteVocab, &policy(&[]), &options(50, false), &mut rec).unwrap();
    assert_eq!((reply.stop_reason, reply.text.as_str()), (StopReason::Cancelled, "abc"));

    let (reply, _) = generate(&script, &[], options(4, false));
    assert_eq!((reply.stop_reason, reply.text.as_str()), (StopReason::Length, "abcd"));

    let mut small = Scripted::new(&script, prompt.len());
    small.capacity = 6;
    let mut session = Session::new(small);
    let reply = session.generate(&prompt, &ByteVocab, &policy(&[]), &options(50, false), &mut Record::default()).unwrap();
    assert_eq!(reply.stop_reason, StopReason::ContextFull);
    assert_eq!(reply.text, "abcde");

    let long = bytes("this prompt is longer than six");
    let mut small = Scripted::new(&script, long.len());
    small.capacity = 6;
    let err = Session::new(small).generate(&long, &ByteVocab, &policy(&[]), &options(5, false), &mut Record::default());
    assert!(matches!(err, Err(GenerateError::PromptTooLong { .. })));
    let err = Session::new(Scripted::new(&script, 0)).generate(
        &[],
        &ByteVocab,
        &policy(&[]),
        &options(5, false),
        &mut Record::default(),
    );
    assert!(matches!(err, Err(GenerateError::EmptyPrompt)));
    let err = Session::new(Scripted::new(&script, 1)).generate(
        &[9999],
        &ByteVocab,
        &policy(&[]),
        &options(5, false),
        &mut Record::default(),
    );
    assert!(matches!(err, Err(GenerateError::BadToken(9999))));
}

#[test]
fn only_new_tokens_are_prefilled() {
    let prompt = bytes("Q?");
    // A model that always ends its turn at once, so only prompt tokens are forwarded.
    let mut model = Scripted::new(&[], prompt.len());
    model.fallback = EOT;
    let mut session = Session::new(model);
    let first = session.generate(&prompt, &ByteVocab, &policy(&[]), &options(5, false), &mut Record::default()).unwrap();
    assert_eq!(first.stats.prefill_tokens, 2);
    let mut longer = prompt.clone();
    longer.extend(bytes("A!Q2?"));
    let second = session.generate(&longer, &ByteVocab, &policy(&[]), &options(5, false), &mut Record::default()).unwrap();
    assert_eq!(second.stats.reused_tokens, 2);
    assert_eq!(second.stats.prefill_tokens, 5);
    // The same prompt again (a regenerate) runs one token to get fresh logits.
    let again = session.generate(&longer, &ByteVocab, &policy(&[]), &options(5, false), &mut Record::default()).unwrap();
    assert_eq!(again.stats.prefill_tokens, 1);
    // An edited last message rewinds to where it differs.
    let mut edited = prompt.clone();
    edited.extend(bytes("A!Z"));
    let edit = session.generate(&edited, &ByteVocab, &policy(&[]), &options(5, false), &mut Record::default()).unwrap();
    assert_eq!(edit.stats.reused_tokens, 4);
    assert_eq!(session.model().forwarded, 2 + 5 + 1 + 1);
}

#[test]
fn a_prefilled_system_block_is_reused_and_stepping_matches_generate() {
    let system = bytes("SYS:rules;");
    let mut model = Scripted::new(&[], system.len() + 2);
    model.fallback = EOT;
    let mut session = Session::new(model);
    session.prefill(&system).unwrap();
    session.prefill(&system).unwrap();
    assert_eq!(session.model().forwarded, system.len(), "a second prefill of the same tokens is free");
    let mut prompt = system.clone();
    prompt.extend(bytes("Q?"));
    let reply = session.generate(&prompt, &ByteVocab, &policy(&[]), &options(5, false), &mut Record::default()).unwrap();
    assert_eq!(reply.stats.reused_tokens, system.len());
    assert_eq!(reply.stats.prefill_tokens, 2);

    // Stepping by hand gives what generate gives, and a step after the end is a no-op.
    let script = bytes("Hello");
    let (whole, _) = generate(&script, &[], options(3, false));
    let prompt = bytes("Q?");
    let mut session = Session::new(Scripted::new(&script, prompt.len()));
    let mut rec = Record::default();
    let mut generation = session.start(&prompt, &ByteVocab, &policy(&[]), &options(3, false), &mut rec).unwrap();
    let mut steps = 0;
    let reply = loop {
        steps += 1;
        if let Some(reply) = generation.step(&mut rec).unwrap() {
            break reply;
        }
    };
    assert!(generation.step(&mut rec).unwrap().is_none());
    assert_eq!(steps, 4, "three tokens, then the length stop");
    assert_eq!(reply.text, whole.text);
    assert_eq!(reply.ids, whole.ids);
}

/// A model whose results arrive a poll later, as a GPU's readback does on the web.
struct Deferred(Scripted);

/// Pending on the first poll, ready on the second.
struct OnePollLate(bool);

impl std::future::Future for OnePollLate {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

impl LanguageModel for Deferred {
    fn n_vocab(&self) -> usize {
        N_VOCAB
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
    fn n_cached(&self) -> usize {
        self.0.n_cached()
    }
    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
    fn forward(&mut self, _tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        Err("this model answers only asynchronously".into())
    }
    fn forward_into_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        logits: &'a mut Vec<f32>,
    ) -> impl std::future::Future<Output = Result<(), ModelError>> + 'a {
        async move {
            OnePollLate(false).await;
            *logits = self.0.forward(tokens)?;
            Ok(())
        }
    }
}

/// Polls `f` to completion on this thread (the futures here wake themselves).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn the_asynchronous_loop_gives_the_same_reply_and_cache() {
    let mut script = bytes("ok\nUser: x");
    script.push(EOT);
    let (sync_reply, _) = generate(&script, &["\nUser:"], options(50, false));
    let prompt = bytes("Q?");
    let mut session = Session::new(Deferred(Scripted::new(&script, prompt.len())));
    let mut rec = Record::default();
    let reply = block_on(async {
        let mut generation =
            session.start_async(&prompt, &ByteVocab, &policy(&["\nUser:"]), &options(50, false), &mut rec).await.unwrap();
        loop {
            if let Some(reply) = generation.step_async(&mut rec).await.unwrap() {
                break reply;
            }
        }
    });
    assert_eq!(
        (reply.text.as_str(), &reply.ids, reply.stop_reason),
        (sync_reply.text.as_str(), &sync_reply.ids, sync_reply.stop_reason)
    );
    // The cache holds the prompt and every token the model read (all but the last).
    assert_eq!(session.cached_tokens().len(), prompt.len() + reply.ids.len() - 1);
    assert_eq!(session.model().n_cached(), session.cached_tokens().len());
    // A prefill that shares the prompt rewinds to it and reads only the rest.
    block_on(session.prefill_async(&bytes("Q?no"))).unwrap();
    assert_eq!(session.cached_tokens(), bytes("Q?no").as_slice());
    assert_eq!(session.model().n_cached(), 4);
    // The synchronous loop refuses a model that only answers asynchronously, cleanly.
    assert!(session.generate(&bytes("R"), &ByteVocab, &policy(&[]), &options(5, false), &mut Record::default()).is_err());
}

/// A model that reduces its logits to the sampler's shortlist itself, as the GPU does,
/// and remembers the lists it was asked for.
struct Shortlisting(Scripted, Vec<Shortlist>);

impl LanguageModel for Shortlisting {
    fn n_vocab(&self) -> usize {
        N_VOCAB
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
    fn n_cached(&self) -> usize {
        self.0.n_cached()
    }
    fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
    fn forward(&mut self, _tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        Err("this model answers only with shortlists".into())
    }
    fn shortlist_limit(&self) -> usize {
        8
    }
    /// Seven launches a step, as a device would count them.
    fn dispatches(&self) -> Option<u64> {
        Some(7 * self.1.len() as u64)
    }
    fn forward_shortlist_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        list: &'a Shortlist,
        out: &'a mut Vec<Candidate>,
    ) -> impl std::future::Future<Output = Result<(), ModelError>> + 'a {
        async move {
            OnePollLate(false).await;
            let mut logits = self.0.forward(tokens)?;
            list.apply(&mut logits, out);
            self.1.push(list.clone());
            Ok(())
        }
    }
}

#[test]
fn a_model_that_shortlists_samples_what_the_whole_row_would() {
    let mut script = bytes("a varied reply, long enough to draw from");
    script.push(EOT);
    let prompt = bytes("Q?");
    let sampling =
        SamplingParams { temperature: 4.0, top_k: 5, top_p: 0.9, repetition_penalty: 1.2, seed: 11, ..Default::default() };
    for sampling in [sampling, SamplingParams::greedy()] {
        let opts = GenerateOptions { sampling: sampling.clone(), max_tokens: 60, raw: false };
        let (whole, _) = generate(&script, &[], opts.clone());
        let mut session = Session::new(Shortlisting(Scripted::new(&script, prompt.len()), Vec::new()));
        let mut rec = Record::default();
        let reply = block_on(async {
            let mut generation = session.start_async(&prompt, &ByteVocab, &policy(&[]), &opts, &mut rec).await.unwrap();
            loop {
                if let Some(reply) = generation.step_async(&mut rec).await.unwrap() {
                    break reply;
                }
            }
        });
        assert_eq!((&reply.text, &reply.ids), (&whole.text, &whole.ids), "{sampling:?}");
        // Every token, the first after the prompt included, came from a shortlist with
        // the turn policy's masks and the sampler's cut.
        let lists = &session.model().1;
        assert_eq!(lists.len(), reply.ids.len());
        let keep = if sampling.is_greedy() { 1 } else { 5 };
        assert!(lists.iter().all(|l| l.keep == keep && l.masked.contains(&TURN) && l.masked.contains(&BOS)));
    }
    // Settings that need every logit (no top-k cut) read the whole row instead.
    let all = SamplingParams { temperature: 1.0, top_k: 0, ..Default::default() };
    let opts = GenerateOptions { sampling: all, max_tokens: 3, raw: false };
    let mut session = Session::new(Shortlisting(Scripted::new(&script, prompt.len()), Vec::new()));
    let started = block_on(session.start_async(&prompt, &ByteVocab, &policy(&[]), &opts, &mut Record::default()));
    assert!(started.is_err(), "the whole row is asked for, and this model refuses it");
}

#[test]
fn the_speed_test_awaits_a_model_that_answers_later_and_counts_its_launches() {
    let plan = charter_core::bench::BenchPlan {
        prompt: bytes("abcdefghij"),
        prefill: vec![3, 10],
        decode: 5,
        context: bytes("ctx"),
        turn: bytes("t?"),
    };
    let mut clock = 0.0;
    let mut now = || {
        clock += 1.0;
        clock
    };
    let mut session = Session::new(Shortlisting(Scripted::new(&[], 0), Vec::new()));
    // Without waiting, a model that answers later cannot be timed, and says so.
    assert!(session.measure(&plan, &mut now).is_err());
    let result = block_on(session.measure_async(&plan, &mut now)).unwrap();
    assert_eq!(result.prefill.iter().map(|p| p.tokens).collect::<Vec<_>>(), [3, 10]);
    assert_eq!((result.decode_tokens, result.turn_tokens), (5, 2));
    assert_eq!(result.dispatches_per_token, Some(7.0));
    // Greedy steps read back one candidate each, and the cache is left empty.
    assert!(session.model().1.iter().all(|l| l.keep == 1 && l.masked.is_empty()));
    assert!(session.cached_tokens().is_empty());
    // A model that answers at once is timed without waiting, and counts no launches.
    let mut session = Session::new(Scripted::new(&[], 0));
    let result = session.measure(&plan, &mut now).unwrap();
    assert_eq!((result.decode_tokens, result.dispatches_per_token), (5, None));
}

/// Keeps the tokens it was fed as its "cache" and ends every reply at once; shifts
/// when `shifts` is set.
struct Tape {
    tokens: Vec<u32>,
    fed: usize,
    shifts: bool,
    removed: Vec<(usize, usize)>,
}

impl LanguageModel for Tape {
    fn n_vocab(&self) -> usize {
        N_VOCAB
    }
    fn capacity(&self) -> usize {
        4096
    }
    fn n_cached(&self) -> usize {
        self.tokens.len()
    }
    fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }
    fn remove(&mut self, from: usize, to: usize) -> Result<(), ModelError> {
        if !self.shifts {
            return Err("no shift here".into());
        }
        self.removed.push((from, to));
        self.tokens.drain(from..to);
        Ok(())
    }
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.tokens.extend_from_slice(tokens);
        self.fed += tokens.len();
        let mut logits = vec![0.0; N_VOCAB];
        logits[EOT as usize] = 10.0;
        Ok(logits)
    }
}

#[test]
fn a_prompt_without_its_oldest_messages_shifts_the_cache_instead_of_reading_it_again() {
    let system = bytes("<system block>");
    let old = bytes(&"an old exchange that leaves the window. ".repeat(3));
    let kept = bytes(&"the exchanges that stay in view, long enough to keep. ".repeat(2));
    let first = [system.clone(), old.clone(), kept.clone()].concat();
    let next = [system.clone(), kept.clone(), bytes("new question?")].concat();
    for shifts in [true, false] {
        let mut session = Session::new(Tape { tokens: Vec::new(), fed: 0, shifts, removed: Vec::new() });
        session.generate(&first, &ByteVocab, &policy(&[]), &options(4, false), &mut Record::default()).unwrap();
        let before = session.model().fed;
        assert_eq!(session.shift_for(&next), if shifts { kept.len() } else { 0 });
        let reply = session.generate(&next, &ByteVocab, &policy(&[]), &options(4, false), &mut Record::default()).unwrap();
        let read = session.model().fed - before;
        assert_eq!(session.cached_tokens(), &next[..], "the session's record and the model's cache agree");
        assert_eq!(session.model().tokens, next);
        if shifts {
            assert_eq!(session.model().removed, vec![(system.len(), system.len() + old.len())]);
            assert_eq!(read, bytes("new question?").len(), "only the new message is read");
            assert_eq!(reply.stats.shifted_tokens, kept.len());
            assert_eq!(reply.stats.reused_tokens, system.len() + kept.len());
        } else {
            assert_eq!(read, kept.len() + bytes("new question?").len(), "without a shift the kept messages are read again");
            assert_eq!((reply.stats.shifted_tokens, reply.stats.reused_tokens), (0, system.len()));
        }
    }
}

#[test]
fn a_shift_that_covers_the_whole_prompt_still_leaves_a_token_to_read() {
    let system = bytes("<sys>");
    let kept = bytes(&"kept text that the next prompt repeats exactly. ".repeat(2));
    let first = [system.clone(), bytes("dropped message"), kept.clone()].concat();
    let next = [system.clone(), kept.clone()].concat();
    let mut session = Session::new(Tape { tokens: Vec::new(), fed: 0, shifts: true, removed: Vec::new() });
    session.prefill(&first).unwrap();
    let before = session.model().fed;
    session.shift_for(&next);
    let reply = session.generate(&next, &ByteVocab, &policy(&[]), &options(4, false), &mut Record::default()).unwrap();
    assert_eq!(session.model().fed - before, 1, "the last prompt token is read for its logits");
    assert_eq!(reply.stats.shifted_tokens, kept.len() - 1);
    assert_eq!(session.model().tokens, next);
}

#[test]
fn an_edited_message_is_read_again_not_spliced() {
    // Without shift_for (no message left the window), a prompt that differs in the
    // middle reuses only the common prefix, however much of the cache follows.
    let system = bytes("<sys>");
    let tail = bytes(&"the rest of the conversation, long enough to match. ".repeat(2));
    let first = [system.clone(), bytes("Hello there friend"), tail.clone()].concat();
    let edited = [system.clone(), bytes("Hello friend"), tail.clone()].concat();
    let mut session = Session::new(Tape { tokens: Vec::new(), fed: 0, shifts: true, removed: Vec::new() });
    session.prefill(&first).unwrap();
    let reply = session.generate(&edited, &ByteVocab, &policy(&[]), &options(4, false), &mut Record::default()).unwrap();
    assert!(session.model().removed.is_empty());
    assert_eq!(reply.stats.reused_tokens, system.len() + "Hello ".len());
    assert_eq!(reply.stats.shifted_tokens, 0);
}
