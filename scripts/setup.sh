#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine: the
# bare-metal Rust targets and components (rust-toolchain.toml lists them, but
# rustup does not install them by itself here) and QEMU. Idempotent: on a
# machine that already has everything it installs nothing.
#
# QEMU comes from Debian's packages. Some images ship a newer `qemu-utils`
# (from a backports suite) whose `Breaks: qemu-system-common (<< 8.0)` makes
# a plain `apt-get install qemu-system-x86` fail. The emulators and
# `qemu-utils` are therefore installed together at the emulators' candidate
# version, downgrading `qemu-utils` where it is newer.
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
[ ${#need_pkgs[@]} -gt 0 ] || exit 0

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "setup: installing ${need_pkgs[*]}"
$SUDO apt-get update -qq
apt_args=(-y -qq)
emulator=""
for p in "${need_pkgs[@]}"; do
    case $p in qemu-system-*) emulator=$p ;; esac
done
if [ -n "$emulator" ]; then
    want=$(apt-cache policy "$emulator" | awk '/Candidate:/ {print $2}')
    have=$(dpkg-query -W -f='${Status} ${Version}' qemu-utils 2>/dev/null |
        awk '/install ok installed/ {print $4}')
    if [ -n "$want" ] && [ "$want" != "(none)" ] && [ -n "$have" ] && [ "$have" != "$want" ]; then
        echo "setup: qemu-utils $have is installed; pinning it to $want, the emulators' version"
        need_pkgs+=("qemu-utils=$want")
        apt_args+=(--allow-downgrades)
    fi
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install "${apt_args[@]}" "${need_pkgs[@]}" >/dev/null
for e in qemu-system-x86_64 qemu-system-aarch64; do
    command -v "$e" >/dev/null 2>&1 || {
        echo "setup: $e is still missing after installing ${need_pkgs[*]}" >&2
        exit 1
    }
done
