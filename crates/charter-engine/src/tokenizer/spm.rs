//! SentencePiece-style tokenization as llama.cpp does it, over the vocabulary table the
//! [`super::Tokenizer`] already holds: no merge table.
//!
//! A text starts as one symbol per character; the adjacent pair whose concatenation is
//! the best-ranked normal token merges, again and again, until no pair's concatenation
//! is one. A merge's rank is the merged token's score (higher first), then its id, then
//! where the pair splits it, then the pair's position in the text: the order a BPE whose
//! merges were every split of every normal token would apply. Built that way (with the
//! `tokenizers` library) a 262k vocabulary needed a million merges and about 70 MB; here
//! the pairs are looked up in a sorted index of the vocabulary as they appear. A
//! character outside the vocabulary becomes its bytes' `<0xNN>` tokens, or the unknown
//! token.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::TokenKind;

/// The SentencePiece side of a vocabulary: what encoding needs beyond the texts.
#[derive(Debug)]
pub(super) struct Spm {
    scores: Vec<f32>,
    /// Token ids ordered by text, then id: a text's first id comes first.
    by_text: Vec<u32>,
    /// The `<0xNN>` token of each byte, where the vocabulary has it.
    byte_tokens: Vec<Option<u32>>,
    unknown: Option<u32>,
    add_space_prefix: bool,
    /// User-defined tokens by their first byte, longest first: split out of any text.
    user_defined: Vec<Vec<u32>>,
}

/// One symbol of the text being merged: a span of the normalized text and its token.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    id: u32,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A possible merge of symbols `left` and `left`'s next, ranked (see the module docs).
#[derive(Debug)]
struct Pair {
    score: f32,
    id: u32,
    split: usize,
    left: usize,
    /// The lengths the two symbols had when the pair was found: a merge since makes it
    /// stale.
    lens: (usize, usize),
}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> Ordering {
        // The heap pops the greatest: higher score, then lower id, split and position.
        self.score
            .total_cmp(&other.score)
            .then(other.id.cmp(&self.id))
            .then(other.split.cmp(&self.split))
            .then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pair {}

impl Spm {
    pub(super) fn new(texts: &[String], kinds: &[TokenKind], scores: Vec<f32>, add_space_prefix: bool) -> Spm {
        let mut by_text: Vec<u32> = (0..texts.len() as u32).collect();
        by_text.sort_by(|&a, &b| texts[a as usize].cmp(&texts[b as usize]).then(a.cmp(&b)));
        let mut spm = Spm { scores, by_text, byte_tokens: vec![None; 256], unknown: None, add_space_prefix, user_defined: vec![Vec::new(); 256] };
        for b in 0..=255u8 {
            spm.byte_tokens[usize::from(b)] = spm.lookup(texts, &format!("<0x{b:02X}>"));
        }
        spm.unknown = kinds.iter().position(|k| *k == TokenKind::Unknown).map(|i| i as u32);
        for (id, (t, k)) in texts.iter().zip(kinds).enumerate() {
            if *k == TokenKind::UserDefined && !t.is_empty() {
                spm.user_defined[usize::from(t.as_bytes()[0])].push(id as u32);
            }
        }
        for list in &mut spm.user_defined {
            list.sort_by(|&a, &b| texts[b as usize].len().cmp(&texts[a as usize].len()).then(a.cmp(&b)));
        }
        spm
    }

    /// The first id whose text is `text`.
    fn lookup(&self, texts: &[String], text: &str) -> Option<u32> {
        let at = self.by_text.partition_point(|&id| texts[id as usize].as_str() < text);
        self.by_text.get(at).copied().filter(|&id| texts[id as usize] == text)
    }

    /// Tokenizes plain text (no control tokens): user-defined tokens split out as they
    /// are, each piece between them normalized and merged.
    pub(super) fn encode(&self, texts: &[String], kinds: &[TokenKind], text: &str, out: &mut Vec<u32>) {
        let (mut piece, mut pos) = (0, 0);
        while pos < text.len() {
            let rest = &text[pos..];
            let found = self.user_defined[usize::from(rest.as_bytes()[0])].iter().find(|&&id| rest.starts_with(texts[id as usize].as_str()));
            match found {
                Some(&id) => {
                    self.encode_piece(texts, kinds, &text[piece..pos], out);
                    out.push(id);
                    pos += texts[id as usize].len();
                    piece = pos;
                }
                None => pos += rest.chars().next().map_or(1, char::len_utf8),
            }
        }
        self.encode_piece(texts, kinds, &text[piece..], out);
    }

    fn encode_piece(&self, texts: &[String], kinds: &[TokenKind], piece: &str, out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        let mut text = String::with_capacity(piece.len() + 3);
        if self.add_space_prefix {
            text.push('▁');
        }
        text.extend(piece.chars().map(|c| if c == ' ' { '▁' } else { c }));

        // One symbol per character, or per byte where a character is not a token (a
        // character with neither is dropped, as it was by the `tokenizers` BPE).
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        let mut push = |start: usize, len: usize, id: u32| {
            let i = symbols.len();
            let prev = i.checked_sub(1);
            symbols.push(Symbol { start, len, id, prev, next: None });
            if let Some(p) = prev {
                symbols[p].next = Some(i);
            }
        };
        for (start, c) in text.char_indices() {
            let len = c.len_utf8();
            let chunk = &text[start..start + len];
            if let Some(id) = self.lookup(texts, chunk) {
                push(start, len, id);
            } else if let Some(bytes) = chunk.bytes().map(|b| self.byte_tokens[usize::from(b)]).collect::<Option<Vec<u32>>>() {
                for (k, id) in bytes.into_iter().enumerate() {
                    push(start + k, 1, id);
                }
            } else if let Some(id) = self.unknown {
                push(start, len, id);
            }
        }
        if symbols.is_empty() {
            return;
        }

        let mergeable = |id: u32| kinds[id as usize] == TokenKind::Normal;
        let pair = |symbols: &[Symbol], left: usize| -> Option<Pair> {
            let (a, b) = (symbols[left], symbols[symbols[left].next?]);
            if !mergeable(a.id) || !mergeable(b.id) {
                return None;
            }
            let id = self.lookup(texts, &text[a.start..b.start + b.len])?;
            mergeable(id).then(|| Pair { score: self.scores[id as usize], id, split: a.len, left, lens: (a.len, b.len) })
        };
        let mut heap: BinaryHeap<Pair> = (0..symbols.len()).filter_map(|i| pair(&symbols, i)).collect();
        while let Some(p) = heap.pop() {
            let a = symbols[p.left];
            let Some(right) = a.next else { continue };
            if a.len == 0 || (a.len, symbols[right].len) != p.lens {
                continue;
            }
            let b = symbols[right];
            symbols[p.left] = Symbol { len: a.len + b.len, id: p.id, next: b.next, ..a };
            symbols[right].len = 0;
            if let Some(n) = b.next {
                symbols[n].prev = Some(p.left);
            }
            if let Some(prev) = a.prev {
                heap.extend(pair(&symbols, prev));
            }
            heap.extend(pair(&symbols, p.left));
        }
        let mut at = Some(0);
        while let Some(i) = at {
            out.push(symbols[i].id);
            at = symbols[i].next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> (Vec<String>, Vec<TokenKind>, Vec<f32>) {
        use TokenKind::*;
        let v = [
            ("<unk>", Unknown, 0.0),
            ("a", Normal, 0.0),
            ("b", Normal, 0.0),
            ("ab", Normal, 1.0),
            ("ba", Normal, 2.0),
            ("<0xC3>", Byte, 0.0),
            ("<0xA9>", Byte, 0.0),
            ("<br>", UserDefined, 0.0),
            ("▁a", Normal, 0.5),
            ("▁", Normal, 0.0),
            ("aa", Control, 9.0),
        ];
        (v.iter().map(|t| t.0.to_owned()).collect(), v.iter().map(|t| t.1).collect(), v.iter().map(|t| t.2).collect())
    }

    fn encode(text: &str, prefix: bool) -> Vec<u32> {
        let (texts, kinds, scores) = vocab();
        let spm = Spm::new(&texts, &kinds, scores, prefix);
        let mut out = Vec::new();
        spm.encode(&texts, &kinds, text, &mut out);
        out
    }

    #[test]
    fn the_best_scoring_pair_merges_first() {
        // "ba" outscores "ab"; "aba" is no token, so a + ba.
        assert_eq!(encode("aba", false), [1, 4]);
        assert_eq!(encode("abab", false), [1, 4, 2]);
        // Pairs that only a control token would join stay apart.
        assert_eq!(encode("aa", false), [1, 1]);
    }

    #[test]
    fn characters_outside_the_vocabulary_fall_back_to_bytes_or_unknown() {
        assert_eq!(encode("é", false), [5, 6]);
        assert_eq!(encode("z", false), [0]);
    }

    #[test]
    fn user_defined_tokens_split_and_each_piece_takes_the_space_prefix() {
        assert_eq!(encode("a<br>b", false), [1, 7, 2]);
        assert_eq!(encode("a a", true), [8, 8]);
        assert_eq!(encode("a<br>a", true), [8, 7, 8]);
    }
}
