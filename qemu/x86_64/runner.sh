#!/usr/bin/env bash
# Boots a kernel ELF in QEMU: cargo's runner for x86_64-unknown-none, so
# `cargo run` and `cargo test` (harness = false tests) boot each image.
#
#   runner.sh KERNEL.elf [WORD...]   WORDs become the kernel command line
#
# Environment:
#   STRATA_QEMU_MEM      guest RAM (default 128M); 3584M puts RAM on both
#                        sides of the PCI hole
#   STRATA_QEMU_SMP      CPUs (default 4)
#   STRATA_QEMU_TIMEOUT  seconds before the run is killed (default 120)
#   STRATA_QEMU_ARGS     extra QEMU arguments
#
# Exit status: 0 when the kernel reported success through isa-debug-exit
# (QEMU status 33); 1 otherwise, including QEMU's status 0, which a
# triple fault with -no-reboot produces.
set -uo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 KERNEL.elf [WORD...]" >&2
    exit 2
fi
kernel=$1
shift

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    echo "runner: installing qemu-system-x86" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq qemu-system-x86 >/dev/null; } ||
        { echo "runner: could not install qemu-system-x86" >&2; exit 1; }
fi

mem=${STRATA_QEMU_MEM:-128M}
smp=${STRATA_QEMU_SMP:-4}
limit=${STRATA_QEMU_TIMEOUT:-120}
cmdline="$*"

echo "runner: $(basename "$kernel") -m $mem -smp $smp${cmdline:+ -append \"$cmdline\"}" >&2
start=$(date +%s%N)
# shellcheck disable=SC2086 # STRATA_QEMU_ARGS is a word list on purpose
timeout --kill-after=5 "$limit" qemu-system-x86_64 \
    -machine pc -m "$mem" -smp "$smp" \
    -kernel "$kernel" ${cmdline:+-append "$cmdline"} \
    -display none -serial stdio -monitor none -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    ${STRATA_QEMU_ARGS:-} </dev/null
status=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))

case $status in
    33) echo "runner: PASS ($elapsed_ms ms, -m $mem -smp $smp)" >&2; exit 0 ;;
    124 | 137) echo "runner: FAIL: timed out after ${limit}s" >&2 ;;
    0) echo "runner: FAIL: QEMU exited without a status (triple fault?)" >&2 ;;
    *) echo "runner: FAIL: QEMU exit status $status" >&2 ;;
esac
exit 1
