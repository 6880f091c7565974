#!/usr/bin/env bash
# The whole test suite: installs prefkit with its test extras (builds the Rust extension),
# then runs the Rust unit tests and pytest. Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[dev]'
cargo test --workspace --locked
python -m pytest -q
