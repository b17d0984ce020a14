#!/usr/bin/env bash
# Run retort's whole test suite on a fresh machine: fetches what the tests
# need from the package registries, then runs every Rust test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f scripts/setup-test-deps.sh ]; then bash scripts/setup-test-deps.sh; fi
cargo test --workspace --locked "$@"
