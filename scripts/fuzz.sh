#!/usr/bin/env bash
# Fuzzes the whole heap for a bounded time: the `heap_ops` target in fuzz/
# decodes the fuzzer's bytes into sequences of GlobalAlloc and page API
# operations on several CPU ids, drains, reclaims and hot-added regions, and
# checks every result against a model (fuzz/harness.rs).
#
#   scripts/fuzz.sh              60 seconds
#   scripts/fuzz.sh 600          ten minutes
#   FUZZ_SANITIZER=address ...   with AddressSanitizer (about 20x slower;
#                                the heap's own memory is one host block,
#                                so ASan sees little the model does not)
#   FUZZ_ARGS="-seed=1" ...      more libFuzzer flags
#
# Needs the nightly toolchain (present on the development machines) and
# cargo-fuzz, which it installs from crates.io if missing. One process
# (libFuzzer's default, the same as -jobs=1). The corpus grows in
# fuzz/corpus/heap_ops (not tracked); a crash is written to
# fuzz/artifacts/heap_ops/ and makes the script fail, printing how to
# replay and minimise it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
sanitizer=${FUZZ_SANITIZER:-none}

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

mkdir -p fuzz/corpus/heap_ops target
log=target/fuzz-heap_ops.log
echo "fuzz: building heap_ops (sanitizer: $sanitizer)"
cargo +nightly fuzz build --sanitizer "$sanitizer" heap_ops
echo "fuzz: running heap_ops for $secs s"
set +e
# shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
cargo +nightly fuzz run --sanitizer "$sanitizer" heap_ops -- \
    -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$log" 2>&1
rc=$?
set -e

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
if [ "$rc" -ne 0 ]; then
    # The panic message and the input that caused it.
    grep -v -E '^#[0-9]+' "$log" | tail -n 60
    echo
    echo "fuzz: heap_ops FAILED after ${runs:-?} executions (log: $log)"
    echo "fuzz: replay:   cargo +nightly fuzz run --sanitizer $sanitizer heap_ops <artifact>"
    echo "fuzz: minimise: cargo +nightly fuzz tmin --sanitizer $sanitizer heap_ops <artifact>"
    exit 1
fi
grep -E '^(Done|stat::)' "$log" || true
echo "fuzz: heap_ops ran ${runs:-?} executions in $secs s, no crash (corpus: $(find fuzz/corpus/heap_ops -type f | wc -l) inputs)"
