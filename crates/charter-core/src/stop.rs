//! Stop strings found across token boundaries, with hold-back: no prefix of a stop
//! string reaches the stream until it is known not to be one.

/// Scans streamed text for stop strings.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What [`StopMatcher::push`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopScan {
    /// Text that is safe to show.
    pub emit: String,
    /// The stop string that was found, if any; nothing after its start is emitted.
    pub stopped: Option<String>,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        StopMatcher { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    /// Adds streamed text.
    pub fn push(&mut self, text: &str) -> StopScan {
        self.held.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, s)| (*at, std::cmp::Reverse(s.len())));
        if let Some((at, stop)) = first {
            let emit = self.held[..at].to_owned();
            let stopped = Some(stop.clone());
            self.held.clear();
            return StopScan { emit, stopped };
        }
        let keep = self.longest_partial_suffix();
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_owned();
        self.held.drain(..cut);
        StopScan { emit, stopped: None }
    }

    /// Ends the stream, releasing held text that never became a stop string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// The longest suffix of the held text that is a proper prefix of a stop string.
    fn longest_partial_suffix(&self) -> usize {
        let mut best = 0;
        for (start, _) in self.held.char_indices() {
            let suffix = &self.held[start..];
            if self.stops.iter().any(|s| s.len() > suffix.len() && s.starts_with(suffix)) {
                best = best.max(suffix.len());
                break;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> StopMatcher {
        StopMatcher::new(&["<|im_end|>".to_owned(), "\nUser:".to_owned()])
    }

    #[test]
    fn stop_string_split_across_tokens() {
        let mut s = m();
        assert_eq!(s.push("Hello <|im").emit, "Hello ");
        let scan = s.push("_end|> more");
        assert_eq!(scan.emit, "");
        assert_eq!(scan.stopped.as_deref(), Some("<|im_end|>"));
    }

    #[test]
    fn false_alarm_is_released() {
        let mut s = m();
        assert_eq!(s.push("a <|i").emit, "a ");
        assert_eq!(s.push("s here").emit, "<|is here");
        assert_eq!(s.push("\nUs").emit, "");
        assert_eq!(s.finish(), "\nUs");
    }

    #[test]
    fn no_prefix_of_a_stop_string_is_ever_emitted_before_the_stop() {
        let text = "Sure.\nUser: next question";
        let mut s = m();
        let mut shown = String::new();
        for c in text.chars() {
            let scan = s.push(&c.to_string());
            shown.push_str(&scan.emit);
            assert!(!shown.ends_with('\n'), "a newline that may start a stop string leaked");
            if scan.stopped.is_some() {
                break;
            }
        }
        assert_eq!(shown, "Sure.");
    }
}
