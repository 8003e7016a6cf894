#!/usr/bin/env bash
# Boots the demo kernel on x86_64 and aarch64 under QEMU with four CPUs: each
# kernel reads its firmware memory map, hands it to strata, runs a short
# workload on every CPU and prints the allocator's statistics table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash qemu/x86_64/run-demo.sh
bash qemu/aarch64/run-demo.sh
