#!/usr/bin/env bash
# Builds the aarch64 test kernel and boots it in the demo mode: every CPU
# runs a short allocation workload and the heap's statistics table is
# printed. Memory and CPU count can be changed with STRATA_QEMU_MEM and
# STRATA_QEMU_SMP (see run-qemu.sh).
set -euo pipefail
cd "$(dirname "$0")"

if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-none; then
    rustup target add aarch64-unknown-none
fi
cargo build --release
exec ./run-qemu.sh target/aarch64-unknown-none/release/strata-qemu-aarch64 demo
