//! Saved KV states: the cache after a prefix, saved and restored into a fresh load of
//! the same model, continues exactly as the prefilled one does; a state of another
//! model, or a damaged one, is refused and leaves the cache empty.

mod common;

use charter_core::{Message, Session, build_prompt};
use common::{GEMMA3, SMOLLM2, load};

fn prompt_ids(model: &charter_engine::Model, messages: &[Message]) -> Vec<u32> {
    build_prompt(&model.template, &model.tokenizer, messages, true).expect("prompt").ids
}

#[test]
fn a_restored_state_continues_bit_for_bit_like_the_prefilled_one() {
    let system = Message::system("You are Charter. Be brief, honest and kind.");
    for file in [SMOLLM2, GEMMA3] {
        let warm = load(file);
        // What every conversation shares: as the worker does, the common start of two.
        let prompt = prompt_ids(&warm, &[system.clone(), Message::user("Name a colour.")]);
        let other = prompt_ids(&warm, &[system.clone(), Message::user("Hi")]);
        let prefix: Vec<u32> = prompt.iter().zip(&other).take_while(|(a, b)| a == b).map(|(a, _)| *a).collect();
        assert!(prefix.len() > 8, "{file}: a shared prefix");
        assert!(prompt.starts_with(&prefix), "{file}: the prompt extends the prefix");
        let reply: Vec<u32> = prompt_ids(&warm, &[Message::user("Blue")]).into_iter().take(4).collect();

        let mut a = Session::new(warm.decoder);
        a.prefill(&prefix).expect("prefill");
        let saved = a.model().save_state(prefix.len()).expect("save");
        let expected = a.score(&prompt, &reply).expect("score");

        let mut b = Session::new(load(file).decoder);
        b.restore(&prefix, |d| d.restore_state(&saved).map(|_| ()).map_err(Into::into)).expect("restores");
        assert_eq!(b.cached_tokens(), prefix.as_slice());
        let got = b.score(&prompt, &reply).expect("score");
        assert_eq!(got, expected, "{file}: the restored cache gives the prefilled cache's logits");
    }
}

#[test]
fn a_state_of_another_model_or_a_damaged_one_is_refused() {
    let smol = load(SMOLLM2);
    let prefix = prompt_ids(&smol, &[Message::system("Hello there."), Message::user("Hi")]);
    let mut session = Session::new(smol.decoder);
    session.prefill(&prefix).expect("prefill");
    let saved = session.model().save_state(prefix.len()).expect("save");

    let mut gemma = Session::new(load(GEMMA3).decoder);
    let refused = gemma.restore(&prefix, |d| d.restore_state(&saved).map(|_| ()).map_err(Into::into));
    let message = refused.expect_err("another model's state").to_string();
    assert!(message.contains("layers"), "{message}");
    assert_eq!(gemma.cached_tokens().len(), 0);
    assert_eq!(gemma.model().n_cached(), 0);

    let mut fresh = Session::new(load(SMOLLM2).decoder);
    for damaged in [&saved[..saved.len() - 1], &saved[..10], b"CKV9 and more bytes than a header, of another version".as_slice()] {
        assert!(fresh.restore(&prefix, |d| d.restore_state(damaged).map(|_| ()).map_err(Into::into)).is_err());
        assert_eq!(fresh.model().n_cached(), 0, "a refused state leaves the cache empty");
    }
    // A state of other tokens than the session is told: the count must match.
    let shorter = &prefix[..prefix.len() - 1];
    assert!(fresh.restore(shorter, |d| d.restore_state(&saved).map(|_| ()).map_err(Into::into)).is_err());
    assert_eq!(fresh.cached_tokens().len(), 0);
}
