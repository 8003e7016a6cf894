#!/usr/bin/env bash
# Boots the x86_64 kernel in demo mode: 4 CPUs allocate a mix of objects,
# and the heap's statistics table is printed while they are live and again
# after everything is freed, drained and reclaimed.
#   STRATA_QEMU_MEM=3584M qemu/x86_64/run-demo.sh   for RAM above 4 GiB
set -euo pipefail
cd "$(dirname "$0")"
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-none; then
    rustup target add x86_64-unknown-none
fi
STRATA_QEMU_MEM=${STRATA_QEMU_MEM:-256M} cargo run --release -- demo
