#!/usr/bin/env bash
# Fetch what retort's tests need and that is not in the repository:
# the all-MiniLM-L6-v2 weights into .cache/minilm (tests that need them skip
# with a message when they are absent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-minilm.sh .cache/minilm
