//! How many positions of a model's window Charter allocates: the window the model was
//! trained for, unless Charter's profile for the model caps it lower, or its KV cache
//! would take more memory than the device should give it. The choice comes with the
//! reason, which the UI and `charter inspect` show.

use serde::{Deserialize, Serialize};

/// What bounded the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowLimit {
    /// The caller asked for this many.
    Requested,
    /// The model's own trained context.
    Trained,
    /// Charter's profile for the model (`constitution/manifest.toml`).
    Profile,
    /// The memory budget for the KV cache.
    Memory,
}

/// A chosen window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Positions allocated.
    pub tokens: usize,
    /// Why not more.
    pub limit: WindowLimit,
}

/// A memory-bound window is rounded down to a multiple of this, so a budget that varies a
/// little from device to device gives the same window (and the same saved states).
const STEP: usize = 1024;

/// The smallest window Charter allocates, whatever the budget: the system block and a
/// reply must fit.
pub const MIN_WINDOW: usize = 1024;

/// Chooses the window: `requested` where given, else the smallest of the trained
/// context, the profile's cap and what `budget_bytes` holds at `bytes_per_token`.
pub fn choose(requested: Option<usize>, trained: usize, profile: usize, bytes_per_token: u64, budget_bytes: u64) -> Window {
    if let Some(tokens) = requested {
        return Window { tokens, limit: WindowLimit::Requested };
    }
    let trained = trained.max(1);
    let by_memory = usize::try_from(budget_bytes / bytes_per_token.max(1)).unwrap_or(usize::MAX);
    let by_memory = (by_memory / STEP * STEP).max(MIN_WINDOW);
    [(trained, WindowLimit::Trained), (profile, WindowLimit::Profile), (by_memory, WindowLimit::Memory)]
        .into_iter()
        .fold(Window { tokens: usize::MAX, limit: WindowLimit::Trained }, |best, (tokens, limit)| {
            if tokens < best.tokens { Window { tokens, limit } } else { best }
        })
}

/// The window for a model under Charter's constitution: its profile for the model (by
/// name or architecture) caps the trained context.
#[allow(clippy::too_many_arguments)]
pub fn for_model(
    constitution: &crate::constitution::Constitution,
    name: &str,
    architecture: &str,
    requested: Option<usize>,
    trained: usize,
    bytes_per_token: u64,
    budget_bytes: u64,
) -> Window {
    let (_, profile) = constitution.profile_for(name, architecture);
    choose(requested, trained, profile.context_length, bytes_per_token, budget_bytes)
}

impl Window {
    /// One sentence for the user on the window and why it is that long.
    pub fn describe(&self, trained: usize, bytes_per_token: u64) -> String {
        let n = thousands(self.tokens);
        let of_trained = if self.tokens < trained { format!("{n} of the {} tokens the model was trained for", thousands(trained)) } else { format!("{n} tokens") };
        let mib = |tokens: usize| (tokens as u64 * bytes_per_token).div_ceil(1 << 20);
        match self.limit {
            WindowLimit::Requested => format!("{n} tokens, as asked ({} MB of cache)", mib(self.tokens)),
            WindowLimit::Trained => format!("{n} tokens: the window the model was trained for ({} MB of cache)", mib(self.tokens)),
            WindowLimit::Profile => format!("{of_trained}: Charter's profile for this model stops there ({} MB of cache)", mib(self.tokens)),
            WindowLimit::Memory => format!(
                "{of_trained}: the whole window's cache would take {} MB, more than Charter gives it on this device",
                mib(trained)
            ),
        }
    }
}

/// `8192` as `8,192`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn the_trained_window_where_nothing_caps_it() {
        let w = choose(None, 8192, 8192, 23 * KIB, 512 << 20);
        assert_eq!(w, Window { tokens: 8192, limit: WindowLimit::Trained });
        assert_eq!(w.describe(8192, 23 * KIB), "8,192 tokens: the window the model was trained for (184 MB of cache)");
    }

    #[test]
    fn the_profile_caps_a_long_trained_window() {
        let w = choose(None, 131_072, 32_768, 2 * KIB, 1 << 30);
        assert_eq!(w, Window { tokens: 32_768, limit: WindowLimit::Profile });
        assert!(w.describe(131_072, 2 * KIB).starts_with("32,768 of the 131,072 tokens the model was trained for: Charter's profile"));
    }

    #[test]
    fn memory_caps_it_in_whole_steps_and_never_below_the_minimum() {
        let w = choose(None, 32_768, 32_768, 18 * KIB, 512 << 20);
        assert_eq!(w, Window { tokens: 28_672, limit: WindowLimit::Memory });
        assert!(w.describe(32_768, 18 * KIB).contains("would take 576 MB"), "{}", w.describe(32_768, 18 * KIB));
        assert_eq!(choose(None, 32_768, 32_768, 1 << 20, 1 << 20).tokens, MIN_WINDOW);
    }

    #[test]
    fn smollm2_gets_its_profile_window() {
        let constitution = crate::constitution::Constitution::builtin().unwrap();
        let w = for_model(&constitution, "SmolLM2 135M Instruct", "llama", None, 8192, 23 * KIB, 512 << 20);
        assert_eq!(w.tokens, 8192);
    }

    #[test]
    fn a_request_wins_and_a_short_trained_window_stays_short() {
        assert_eq!(choose(Some(512), 8192, 8192, 1, 1), Window { tokens: 512, limit: WindowLimit::Requested });
        assert_eq!(choose(None, 2048, 8192, 23 * KIB, 512 << 20), Window { tokens: 2048, limit: WindowLimit::Trained });
        assert_eq!(thousands(1_048_576), "1,048,576");
        assert_eq!(thousands(999), "999");
    }
}
