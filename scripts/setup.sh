#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine: the
# bare-metal Rust targets and components (rust-toolchain.toml lists them, but
# rustup does not install them by itself here) and QEMU. Idempotent.
set -euo pipefail

rustup target add x86_64-unknown-none aarch64-unknown-none >/dev/null 2>&1 ||
    rustup target add x86_64-unknown-none aarch64-unknown-none
rustup component add clippy rustfmt >/dev/null 2>&1 || true

need_pkgs=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_pkgs+=(qemu-system-x86)
command -v qemu-system-aarch64 >/dev/null 2>&1 || need_pkgs+=(qemu-system-arm)
if [ "${STRATA_NEED_VALGRIND:-0}" = 1 ] && ! command -v valgrind >/dev/null 2>&1; then
    need_pkgs+=(valgrind)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "setup: installing ${need_pkgs[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
