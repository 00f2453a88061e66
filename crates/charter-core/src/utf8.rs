//! Incremental UTF-8: bytes in as tokens arrive, whole characters out.

/// Buffers the bytes of a character split across tokens until it is complete.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// A new, empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns the text that is now complete. A byte sequence that can
    /// never become valid is emitted as U+FFFD rather than held forever.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Checked by from_utf8 above.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream; an unfinished character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_split_across_tokens_is_emitted_once_whole() {
        let bytes = "a😀b".as_bytes();
        let mut s = Utf8Stream::new();
        let mut out = Vec::new();
        for b in bytes {
            out.push(s.push(&[*b]));
        }
        assert_eq!(out, vec!["a", "", "", "", "😀", "b"]);
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn invalid_bytes_do_not_stall_the_stream() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(&[0xFF, b'x']), "\u{FFFD}x");
        assert_eq!(s.push(&[0xF0, 0x9F]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
