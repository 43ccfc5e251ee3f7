#!/usr/bin/env bash
# Install the test dependencies (pinned, with hashes) into .venv, then lint, type-check and run
# the whole test suite. This is the test command of README.md, and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --require-hashes -r requirements/test.txt
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
npm ci --prefix tests/servers --no-audit --no-fund --loglevel=error

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
