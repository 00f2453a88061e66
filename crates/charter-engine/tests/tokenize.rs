//! The tokenizer built from each GGUF reproduces llama.cpp's ids for every shared
//! string, with special-token parsing off and on, and decodes them back.

mod common;

use charter_engine::tokenizer::Tokenizer;
use charter_engine::gguf::Gguf;
use common::*;

fn tokenizer(file: &str) -> Tokenizer {
    let bytes = model_bytes(file);
    Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap()).unwrap()
}

fn check_plain(tok: &Tokenizer, oracle: &str) {
    let rows = oracle_rows(oracle);
    assert!(rows.len() > 100);
    for row in rows {
        let text = row["text"].as_str().unwrap();
        let want = ids(&row["ids"]);
        assert_eq!(tok.encode(text, false).unwrap(), want, "ids of {text:?}");
        let decoded = tok.decode(&want, false);
        if row["roundtrip"].as_bool().unwrap() {
            assert_eq!(decoded, text, "round trip of {text:?}");
        } else {
            assert_eq!(decoded, row["detokenized"].as_str().unwrap(), "detokenization of {text:?}");
        }
    }
}

fn check_special(tok: &Tokenizer, oracle: &str) {
    for row in oracle_rows(oracle) {
        let text = row["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, true).unwrap(), ids(&row["ids"]), "special ids of {text:?}");
        assert_eq!(tok.encode(text, false).unwrap(), ids(&row["ids_parse_special_false"]), "plain ids of {text:?}");
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    let tok = tokenizer(SMOLLM2);
    check_plain(&tok, "tokenize_smollm2.jsonl");
    check_special(&tok, "tokenize_smollm2_special.jsonl");
    assert_eq!(tok.end_of_generation, vec![0, 2, 4]);
    assert!(!tok.add_bos);
}

#[test]
fn gemma3_matches_llama_cpp() {
    let tok = tokenizer(GEMMA3);
    check_plain(&tok, "tokenize_gemma3.jsonl");
    check_special(&tok, "tokenize_gemma3_special.jsonl");
    assert_eq!(tok.end_of_generation, vec![1, 106, 212]);
    assert!(tok.add_bos);
    // User-defined tokens are split out even with special parsing off.
    assert_eq!(tok.encode("<start_of_image>", false).unwrap(), vec![255999]);
}

#[test]
fn look_alikes_of_control_tokens_are_text_unless_parsed() {
    let tok = tokenizer(SMOLLM2);
    assert_eq!(tok.encode("<|im_start|>user", false).unwrap(), vec![44, 108, 306, 79, 3738, 108, 46, 4093]);
    assert_eq!(tok.encode("<|im_start|>user", true).unwrap(), vec![1, 4093]);
}
