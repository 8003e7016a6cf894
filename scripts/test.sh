#!/usr/bin/env bash
# Runs every test of strata: formatting and lints on the host and both
# bare-metal targets, the host unit, integration and property tests, the
# loom models, a Miri subset, a minute of fuzzing, the examples and docs,
# the QEMU test kernels on x86_64 and aarch64, and the benchmark suite's
# quick mode (which checks every allocator's results, not its timings).
#
#   scripts/test.sh            everything
#   STRATA_SKIP_QEMU=1 ...     without the QEMU kernels
#   STRATA_SKIP_MIRI=1, STRATA_SKIP_FUZZ=1, STRATA_SKIP_BENCH=1
#   STRATA_FUZZ_SECONDS=N      fuzz for N seconds (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)

step "format"
cargo fmt --all --check
for d in qemu/ktest qemu/x86_64 qemu/aarch64 bench; do
    [ -f "$d/Cargo.toml" ] && (cd "$d" && cargo fmt --check)
done

step "clippy: host and both targets"
cargo clippy --all-targets --features std -- -D warnings
cargo clippy --target x86_64-unknown-none -- -D warnings
cargo clippy --target aarch64-unknown-none -- -D warnings

step "host tests"
cargo test --features std 2>&1 | tee target/host-tests.log
grep -q "test result: ok" target/host-tests.log

step "loom: the per-CPU claim protocol"
bash scripts/loom.sh

step "examples (both targets and host), rustdoc, MSRV, nightly feature"
bash scripts/check-examples.sh

if [ "${STRATA_SKIP_MIRI:-0}" != 1 ]; then
    step "Miri"
    bash scripts/miri.sh
fi

if [ "${STRATA_SKIP_FUZZ:-0}" != 1 ]; then
    step "fuzzing"
    bash scripts/fuzz.sh "${STRATA_FUZZ_SECONDS:-60}"
fi

if [ "${STRATA_SKIP_QEMU:-0}" != 1 ]; then
    q0=$(date +%s)
    step "QEMU x86_64"
    bash qemu/x86_64/run-tests.sh
    step "QEMU aarch64"
    bash qemu/aarch64/run-tests.sh
    echo "QEMU part: $(( $(date +%s) - q0 )) s"
fi

if [ -f bench/Cargo.toml ] && [ "${STRATA_SKIP_BENCH:-0}" != 1 ]; then
    step "benchmarks, quick mode (checks only)"
    cargo run --release --manifest-path bench/Cargo.toml -- --quick 2>&1 | tail -n 40
fi

echo
echo "all tests passed in $(( $(date +%s) - t0 )) s"
passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' target/host-tests.log | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, 0 failed"
