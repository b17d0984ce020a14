#!/usr/bin/env bash
# Install the Python packages that retort's integration tests use:
# the official `openai` client, for scripts/openai_client_check.py (run by
# crates/retort-server/tests/openai_client.rs against a live server).
# Safe to run repeatedly; does nothing when `openai` is already importable.
set -euo pipefail
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup-python-test-deps: $PY not found; the openai client test will be skipped" >&2
  exit 0
fi
if "$PY" -c "import openai" >/dev/null 2>&1; then
  echo "setup-python-test-deps: openai $("$PY" -c 'import openai; print(openai.__version__)') already installed"
  exit 0
fi
# Plain install first; PEP 668 ("externally managed") systems need the flag.
if ! "$PY" -m pip install --quiet --disable-pip-version-check "openai>=1.66,<3"; then
  "$PY" -m pip install --quiet --disable-pip-version-check --break-system-packages "openai>=1.66,<3"
fi
"$PY" -c "import openai; print('setup-python-test-deps: openai', openai.__version__, 'installed')"
