//! Checks a download as it arrives: bytes are hashed on the way in, a restart from
//! zero (a server that ignored the Range request) resets the hash, and nothing counts
//! as a model until size and SHA-256 both match.

use charter_protocol::{ErrorKind, WorkerError};
use sha2::{Digest, Sha256};

/// A download being received.
#[derive(Debug, Clone)]
pub struct Download {
    expected_size: Option<u64>,
    expected_sha256: Option<String>,
    hasher: Sha256,
    bytes: Vec<u8>,
}

impl Download {
    /// Expects `size` bytes hashing to `sha256` (lowercase hex), where known.
    pub fn new(size: Option<u64>, sha256: Option<String>) -> Self {
        let capacity = size.map_or(0, |s| s.min(1 << 32) as usize);
        Download {
            expected_size: size,
            expected_sha256: sha256.filter(|s| !s.is_empty()).map(|s| s.to_ascii_lowercase()),
            hasher: Sha256::new(),
            bytes: Vec::with_capacity(capacity),
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Forgets everything received (the server sent the whole file again).
    pub fn restart(&mut self) {
        self.bytes.clear();
        self.hasher = Sha256::new();
    }

    /// Appends a chunk. More bytes than expected is an error at once, so a wrong file
    /// is not downloaded to the end.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), WorkerError> {
        let after = self.received() + chunk.len() as u64;
        if let Some(size) = self.expected_size {
            if after > size {
                return Err(WorkerError::new(
                    ErrorKind::Integrity,
                    format!("the server sent more than the expected {size} bytes; the download was discarded"),
                ));
            }
        }
        self.hasher.update(chunk);
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// Whether every expected byte has arrived.
    pub fn is_complete(&self) -> bool {
        self.expected_size.is_some_and(|s| self.received() == s)
    }

    /// Checks size and hash; returns the bytes and their SHA-256 only if both match.
    pub fn finish(self) -> Result<(Vec<u8>, String), WorkerError> {
        if let Some(size) = self.expected_size {
            if self.received() != size {
                return Err(WorkerError::new(
                    ErrorKind::Integrity,
                    format!("the download has {} bytes, not the expected {size}; it was discarded", self.received()),
                ));
            }
        }
        let digest = self.hasher.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(expected) = &self.expected_sha256 {
            if *expected != hex {
                return Err(WorkerError::new(
                    ErrorKind::Integrity,
                    format!("the download's SHA-256 is {hex}, not the expected {expected}: the file is corrupted or not the one in the catalog, and it was not stored"),
                ));
            }
        }
        Ok((self.bytes, hex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn a_whole_matching_download_passes() {
        let mut d = Download::new(Some(5), Some(HELLO_SHA.to_uppercase()));
        d.push(b"he").expect("fits");
        assert!(!d.is_complete());
        d.push(b"llo").expect("fits");
        assert!(d.is_complete());
        let (bytes, sha) = d.finish().expect("matches");
        assert_eq!(bytes, b"hello");
        assert_eq!(sha, HELLO_SHA);
    }

    #[test]
    fn a_restart_forgets_the_partial_hash() {
        let mut d = Download::new(Some(5), Some(HELLO_SHA.into()));
        d.push(b"hel").expect("fits");
        d.restart();
        d.push(b"hello").expect("fits");
        assert_eq!(d.finish().expect("matches").0, b"hello");
    }

    #[test]
    fn corruption_short_files_and_overruns_are_refused() {
        let mut d = Download::new(Some(5), Some(HELLO_SHA.into()));
        d.push(b"jello").expect("fits");
        let e = d.finish().expect_err("corrupt");
        assert_eq!(e.kind, ErrorKind::Integrity);
        assert!(e.message.contains("not stored"), "{}", e.message);

        let mut d = Download::new(Some(5), None);
        d.push(b"hell").expect("fits");
        assert_eq!(d.finish().expect_err("short").kind, ErrorKind::Integrity);

        let mut d = Download::new(Some(5), None);
        assert_eq!(d.push(b"hello!").expect_err("overrun").kind, ErrorKind::Integrity);
    }

    #[test]
    fn without_expectations_any_bytes_pass_and_are_hashed() {
        let mut d = Download::new(None, Some(String::new()));
        d.push(b"hello").expect("fits");
        assert!(!d.is_complete());
        assert_eq!(d.finish().expect("no expectations").1, HELLO_SHA);
    }
}
