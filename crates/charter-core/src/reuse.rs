//! What of the KV cache a new prompt can keep.
//!
//! The common prefix is kept as it stands. When a conversation outgrows the window its
//! oldest messages leave the prompt, and every token after them moves to an earlier
//! position: without more, the whole remaining history would be read again. A *context
//! shift* keeps it instead: the removed span leaves the cache and the tokens after it
//! move down, their keys turned back by the distance (the model does that part, see
//! [`crate::LanguageModel::remove`]). [`plan`] finds the span;
//! [`crate::Session::shift_for`] makes the shift, for a prompt that dropped messages
//! only (the kept tokens were read with the removed ones in view, which is the price of
//! a window, not of an edit).

/// How a prompt reuses the tokens a cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reuse {
    /// Cached tokens that begin the prompt as they stand.
    pub prefix: usize,
    /// Cached tokens right after the prefix that the prompt no longer has (0: no shift).
    pub removed: usize,
    /// Cached tokens after the removed ones that continue the prompt once moved down.
    pub shifted: usize,
}

impl Reuse {
    /// Prompt tokens the cache holds once the plan is carried out.
    pub fn kept(&self) -> usize {
        self.prefix + self.shifted
    }
}

/// A shift that keeps fewer tokens than this is not made: reading them costs less than
/// a pass over the cache, and a short match is as likely chance as the same text.
pub const MIN_SHIFTED: usize = 32;

/// The longest reuse of `cached` by `prompt`: their common prefix, and after it, where
/// the prompt goes on with tokens the cache holds further on, the span between to
/// remove. Of equal matches the earliest is taken (the least removed).
pub fn plan(cached: &[u32], prompt: &[u32]) -> Reuse {
    let prefix = common(cached, prompt);
    let plain = Reuse { prefix, removed: 0, shifted: 0 };
    let (Some(&next), true) = (prompt.get(prefix), prefix < cached.len()) else {
        return plain;
    };
    let mut best = plain;
    for start in prefix + 1..cached.len() {
        // Nothing later can match more than what remains of the cache.
        if cached.len() - start <= best.shifted {
            break;
        }
        if cached[start] != next {
            continue;
        }
        let run = common(&cached[start..], &prompt[prefix..]);
        if run > best.shifted {
            best = Reuse { prefix, removed: start - prefix, shifted: run };
        }
    }
    if best.shifted >= MIN_SHIFTED { best } else { plain }
}

/// Length of the common prefix.
fn common(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` distinct tokens from `base`.
    fn run(base: u32, n: usize) -> Vec<u32> {
        (base..base + n as u32).collect()
    }

    #[test]
    fn a_dropped_exchange_is_removed_and_the_rest_moves_down() {
        let (system, old, kept, reply) = (run(0, 10), run(100, 40), run(200, 50), run(300, 5));
        let cached = [system.clone(), old.clone(), kept.clone(), reply].concat();
        let prompt = [system, kept, run(400, 7)].concat();
        assert_eq!(plan(&cached, &prompt), Reuse { prefix: 10, removed: 40, shifted: 50 });
        assert_eq!(plan(&cached, &prompt).kept(), 60);
    }

    #[test]
    fn a_continued_prompt_or_a_short_match_makes_no_shift() {
        let cached = [run(0, 10), run(100, 40)].concat();
        // The next turn: the cache is a prefix.
        let prompt = [cached.clone(), run(500, 3)].concat();
        assert_eq!(plan(&cached, &prompt), Reuse { prefix: 50, removed: 0, shifted: 0 });
        // A regenerate: the prompt is a prefix.
        assert_eq!(plan(&cached, &cached[..30]), Reuse { prefix: 30, removed: 0, shifted: 0 });
        // Fewer than MIN_SHIFTED tokens after the gap.
        let short = [run(0, 10), run(120, MIN_SHIFTED - 1), run(900, 20)].concat();
        assert_eq!(plan(&cached, &short), Reuse { prefix: 10, removed: 0, shifted: 0 });
        // Another conversation altogether.
        assert_eq!(plan(&cached, &run(700, 80)), Reuse::default());
    }

    #[test]
    fn repeated_text_takes_the_longest_then_the_earliest_match() {
        // "a b a b …": several starts match; the one that keeps the most wins.
        let system = run(0, 4);
        let body: Vec<u32> = (0..200).map(|i| 50 + i % 2).collect();
        let cached = [system.clone(), vec![9; 30], body.clone()].concat();
        let prompt = [system, body].concat();
        assert_eq!(plan(&cached, &prompt), Reuse { prefix: 4, removed: 30, shifted: 200 });
        // A match as long as the prompt keeps the whole prompt.
        assert_eq!(plan(&cached, &prompt).kept(), prompt.len());
    }
}
