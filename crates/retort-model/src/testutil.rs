//! Helpers for tests: find the MiniLM tokenizer and weights.

use std::path::PathBuf;

use crate::render::Tok;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The MiniLM tokenizer.json: the shipped model's copy, else `.cache/minilm`.
pub fn tokenizer_json() -> Option<Vec<u8>> {
    for p in [
        root().join("models/tokenizer.json"),
        root().join(".cache/minilm/tokenizer.json"),
    ] {
        if let Ok(b) = std::fs::read(&p) {
            return Some(b);
        }
    }
    eprintln!(
        "skipped: no tokenizer.json in models/ or .cache/minilm (run scripts/setup-test-deps.sh)"
    );
    None
}

pub fn tok() -> Option<Tok> {
    tokenizer_json().and_then(|b| Tok::from_bytes(&b).ok())
}

/// The MiniLM directory when its weights are present.
pub fn minilm_dir() -> Option<PathBuf> {
    let d = root().join(".cache/minilm");
    if d.join("model.safetensors").is_file() {
        Some(d)
    } else {
        eprintln!(
            "skipped: .cache/minilm/model.safetensors is absent (run scripts/setup-test-deps.sh)"
        );
        None
    }
}
