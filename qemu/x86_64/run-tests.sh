#!/usr/bin/env bash
# Builds the x86_64 test kernels (release, with debug assertions) and boots
# each of them in QEMU with 4 CPUs at two memory sizes:
#   128M   one RAM range below 1 MiB and one above (the small case)
#   3584M  RAM on both sides of the PCI hole (3 GiB below 4 GiB, 512 MiB
#          above), so the heap gets regions above 4 GiB
# and the demo once. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"

# A fresh machine may lack the bare-metal target or QEMU.
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    rustup target add x86_64-unknown-none
fi
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq qemu-system-x86 >/dev/null
fi

start=$(date +%s)
cargo build --release --bins --tests
failures=0
for mem in 128M 3584M; do
    echo "==> cargo test --release (-m $mem -smp 4)"
    if ! STRATA_QEMU_MEM=$mem STRATA_QEMU_TIMEOUT=${STRATA_QEMU_TIMEOUT:-90} \
        cargo test --release --no-fail-fast; then
        failures=$((failures + 1))
    fi
done
echo "==> demo (-m 256M -smp 4)"
if ! STRATA_QEMU_MEM=256M cargo run --release -- demo; then
    failures=$((failures + 1))
fi

# A fault and a panic must be reported and must fail the run.
expect_failure() {
    local mode=$1 output pattern
    shift
    echo "==> $mode mode must fail and report: $*"
    if output=$(STRATA_QEMU_TIMEOUT=30 cargo run --release -q -- "$mode" 2>&1); then
        echo "$output"
        echo "FAIL: the $mode run exited with success"
        failures=$((failures + 1))
        return
    fi
    for pattern in "$@"; do
        if ! grep -q -- "$pattern" <<<"$output"; then
            echo "$output"
            echo "FAIL: the $mode run did not report: $pattern"
            failures=$((failures + 1))
            return
        fi
    done
    grep -A1 -- "$1" <<<"$output"
}
expect_failure fault "EXCEPTION on cpu 0: vector 14 (page fault)" "cr2 0x00007f0000000000"
expect_failure panic "PANIC on cpu 0: panicked at" "deliberate panic on cpu 0"

echo "x86_64 QEMU: $failures failing configurations, $(($(date +%s) - start)) s"
[ "$failures" -eq 0 ]
