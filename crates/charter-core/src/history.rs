//! Keeping a conversation inside the model's window: when it outgrows the context, the
//! oldest user/assistant exchanges go first. The system block and the current turn are
//! never cut.
//!
//! The window is left in steps, not a message at a time: once a conversation overflows,
//! its oldest exchanges go until it takes at most half the room the window has for a
//! conversation (less the system block and the reply's reserve), and later
//! turns keep that drop point for as long as they fit. So the context shift that moves
//! the kept history down in the KV cache (see [`crate::reuse`]) happens once per half a
//! window of conversation, and every turn between reuses the cache as it stands.

use crate::chat::{Message, Role};
use crate::reuse::{self, MIN_SHIFTED};

/// The window a conversation is fitted to, and what the KV cache holds now.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// Positions of the context.
    pub capacity: usize,
    /// Positions kept free for the reply.
    pub reserve: usize,
    /// The tokens in the KV cache.
    pub cached: &'a [u32],
    /// How many tokens every conversation starts with (the template's opening and the
    /// system block): a cache that shares only these holds no conversation of ours.
    pub shared: usize,
}

impl Window<'_> {
    fn fits(&self, prompt: &[u32]) -> bool {
        prompt.len() + self.reserve < self.capacity
    }

    /// Whether the conversation takes at most half the room it has (the window less the
    /// shared start and the reply's reserve).
    fn roomy(&self, prompt: &[u32]) -> bool {
        2 * prompt.len().saturating_sub(self.shared) <= self.capacity.saturating_sub(self.reserve + self.shared)
    }

    /// Whether the cache holds this conversation with these messages dropped already:
    /// the prompt continues it as it stands, well past the shared start.
    fn continues(&self, prompt: &[u32]) -> bool {
        let plan = reuse::plan(self.cached, prompt);
        plan.removed == 0 && plan.prefix >= self.shared + MIN_SHIFTED
    }
}

/// Drops the oldest exchanges of `messages` until the prompt `build` makes of them fits
/// `window`: nothing when the whole conversation fits; otherwise at least what makes it
/// fit, and then more, until the prompt continues what the cache holds (an earlier
/// turn's drop point) or its conversation takes at most half the room the window has
/// for one. A leading system message and the
/// last message stay whatever happens; an exchange is a user message with the assistant
/// messages that follow it. Returns how many messages were dropped; if even the system
/// message and the current turn do not fit, the prompt built from what is left does not
/// either, and the caller reports it. A prompt `build` cannot make counts as not
/// fitting.
pub fn fit_to_window<E>(
    messages: &mut Vec<Message>,
    window: &Window<'_>,
    mut build: impl FnMut(&[Message]) -> Result<Vec<u32>, E>,
) -> usize {
    let mut dropped = 0;
    let start = usize::from(messages.first().is_some_and(|m| m.role == Role::System));
    loop {
        let done = match build(messages) {
            Ok(prompt) if dropped == 0 => window.fits(&prompt),
            Ok(prompt) => window.fits(&prompt) && (window.continues(&prompt) || window.roomy(&prompt)),
            Err(_) => false,
        };
        // Everything between the system message and the current turn is droppable.
        if done || messages.len() <= start + 1 {
            return dropped;
        }
        let mut end = start + 1;
        while end < messages.len() - 1 && messages[end].role != Role::User {
            end += 1;
        }
        dropped += end - start;
        messages.drain(start..end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo() -> Vec<Message> {
        vec![
            Message::system("rules"),
            Message::user("u1"),
            Message::assistant("a1"),
            Message::user("u2"),
            Message::assistant("a2"),
            Message::user("u3"),
        ]
    }

    /// A prompt of 10 tokens for the system message and 10 per other message, each
    /// message's tokens its own (so a cache of one arrangement is recognised).
    fn build(m: &[Message]) -> Result<Vec<u32>, ()> {
        Ok(m.iter()
            .flat_map(|msg| {
                let seed = msg.content.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                (0..10).map(move |i| seed.wrapping_add(i))
            })
            .collect())
    }

    fn window(capacity: usize, cached: &[u32]) -> Window<'_> {
        Window { capacity, reserve: 0, cached, shared: 0 }
    }

    #[test]
    fn nothing_is_dropped_when_it_fits_and_without_a_system_message_too() {
        let mut m = convo();
        assert_eq!(fit_to_window(&mut m, &window(61, &[]), build), 0);
        assert_eq!(m, convo());
        let mut m = convo()[1..].to_vec();
        // 50 tokens in 41: drop to 30, which is not half of 41; then to 10.
        assert_eq!(fit_to_window(&mut m, &window(41, &[]), build), 4);
        assert_eq!(m, vec![Message::user("u3")]);
    }

    #[test]
    fn an_overflow_drops_down_to_half_the_window_and_the_system_and_current_turn_stay() {
        // 60 tokens in a window of 55: one exchange makes it fit (40), two make it roomy (20).
        let mut m = convo();
        assert_eq!(fit_to_window(&mut m, &window(55, &[]), build), 4);
        assert_eq!(m, vec![Message::system("rules"), Message::user("u3")]);
        let mut m = convo();
        assert_eq!(fit_to_window(&mut m, &window(81, &[]), build), 0);
        let mut m = convo();
        assert_eq!(fit_to_window(&mut m, &window(5, &[]), build), 4, "nothing fits: all that can go goes");
        assert_eq!(m, vec![Message::system("rules"), Message::user("u3")]);
    }

    #[test]
    fn a_later_turn_keeps_the_drop_point_the_cache_holds() {
        // The cache holds the conversation with its first exchange dropped, and a reply.
        let earlier = [&convo()[..1], &convo()[3..]].concat();
        let mut cached = build(&earlier).unwrap();
        cached.extend([1, 2, 3]);
        let mut m = convo();
        m.push(Message::assistant("a3"));
        m.push(Message::user("u4"));
        // 80 tokens in 75: dropping one exchange fits (60) and continues the cache.
        assert_eq!(fit_to_window(&mut m, &window(75, &cached), build), 2);
        assert_eq!(m[1], Message::user("u2"));
        // Without that cache, the same overflow drops to half the window.
        let mut m = [convo(), vec![Message::assistant("a3"), Message::user("u4")]].concat();
        assert_eq!(fit_to_window(&mut m, &window(75, &[]), build), 6);
    }
}
