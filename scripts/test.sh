#!/usr/bin/env bash
# The whole test suite: installs prefkit with its test extras (builds the Rust extension),
# then runs the Rust unit tests and pytest. Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[dev]'
# OpenRLHF's data loaders, for the hand-off test (tests/test_openrlhf.py): its wheel pins
# flash-attn, deepspeed and vllm, which need a GPU build; its dataset code needs none of them.
python -m pip install -q --no-deps 'openrlhf==0.11.2' pylatexenc
# RewardBench's section scores, compared with prefkit's (tests/test_eval_rewards.py); its
# import needs fastchat and an older transformers, so the test reads its source directly.
python -m pip install -q --no-deps 'rewardbench==0.1.4'
cargo test --workspace --locked
python -m pytest -q
# Every fuzz harness (fuzz/ops.py, fuzz/readers.py) for a short, fixed budget each (3,000
# executions from one seed, so CI runs the inputs that passed here); a crash fails.
python fuzz/run.py --runs 3000 --seed 1 --jobs 2
