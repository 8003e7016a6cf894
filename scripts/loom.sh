#!/usr/bin/env bash
# Model-checks the per-CPU cache claim protocol with loom: every
# interleaving of contexts claiming, using and releasing one cache (see the
# `loom_models` module in src/cpu_cache.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}" \
    cargo test --release --lib --target-dir target/loom loom_models -- --nocapture
