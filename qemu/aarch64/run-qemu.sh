#!/usr/bin/env bash
# Boots an aarch64 test-kernel ELF in QEMU. Cargo uses this as the runner
# (.cargo/config.toml), so `cargo run` / `cargo test` call it with the ELF
# path as $1; any further arguments become the kernel command line
# (`cargo run --release -- demo`).
#
# Environment (all optional):
#   STRATA_QEMU_MEM      guest RAM (-m), default 256M
#   STRATA_QEMU_SMP      CPUs (-smp), default 4
#   STRATA_QEMU_MACHINE  machine (-M), default virt
#   STRATA_QEMU_ARGS     extra QEMU arguments (word-split)
#   STRATA_QEMU_TIMEOUT  seconds before the run is killed, default 120
#
# Exit status: the kernel's (0 pass, 1 test failure, 2 panic, 3 exception,
# 4 boot error), 124 on timeout.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 KERNEL.elf [kernel command line...]" >&2
    exit 2
fi
kernel=$1
shift

if ! command -v qemu-system-aarch64 >/dev/null 2>&1; then
    echo "run-qemu.sh: installing qemu-system-arm" >&2
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >&2 && apt-get install -y -qq qemu-system-arm >&2
    else
        sudo apt-get update -qq >&2 && sudo apt-get install -y -qq qemu-system-arm >&2
    fi
fi

mem=${STRATA_QEMU_MEM:-256M}
smp=${STRATA_QEMU_SMP:-4}
machine=${STRATA_QEMU_MACHINE:-virt}
limit=${STRATA_QEMU_TIMEOUT:-120}
# shellcheck disable=SC2206
extra=(${STRATA_QEMU_ARGS:-})

append=()
if [ $# -gt 0 ]; then
    append=(-append "$*")
fi

echo "qemu: -M $machine -smp $smp -m $mem ${extra[*]} ${append[*]}" >&2
status=0
timeout --foreground -k 5 "$limit" qemu-system-aarch64 \
    -M "$machine" -cpu cortex-a57 -smp "$smp" -m "$mem" \
    -nographic -monitor none -serial stdio -semihosting \
    "${extra[@]}" \
    -kernel "$kernel" "${append[@]}" </dev/null || status=$?
if [ "$status" = 124 ]; then
    echo "qemu: killed after ${limit}s" >&2
fi
exit "$status"
