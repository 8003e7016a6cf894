#!/usr/bin/env bash
# Builds and lints what a user of the crate sees first: the examples on both
# bare-metal targets and on the host, the documentation, the minimum
# supported Rust version and the `nightly` feature.
#
#   scripts/check-examples.sh
#
# Steps:
#   1. examples/kernel.rs and examples/firmware.rs: clippy -D warnings and a
#      linked build for x86_64-unknown-none and aarch64-unknown-none (each
#      links into an ELF whose entry is `_start`; checked with readelf when
#      it is installed).
#   2. examples/host.rs: runs it (strata as the global allocator of a
#      multi-threaded std program; it checks its own results).
#   3. rustdoc with -D warnings (every public item documented, no broken
#      links), and the doctests.
#   4. MSRV: `cargo build` refuses a toolchain older than `rust-version`,
#      and clippy's `incompatible_msrv` lint (on in step 1 and in
#      scripts/test.sh) flags library items newer than it. Only stable and
#      nightly are installed here, so no build with the oldest supported
#      toolchain itself is run.
#   5. `cargo +nightly build --features nightly` when a nightly toolchain is
#      installed, and the tests of core::alloc::Allocator.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
targets=(x86_64-unknown-none aarch64-unknown-none)

for t in "${targets[@]}"; do
    step "examples on $t"
    cargo clippy --target "$t" --lib --example kernel --example firmware -- -D warnings
    cargo build --target "$t" --example kernel --example firmware
    cargo build --release --target "$t" --example kernel --example firmware
    if command -v readelf >/dev/null 2>&1; then
        for e in kernel firmware; do
            elf="${CARGO_TARGET_DIR:-target}/$t/release/examples/$e"
            entry=$(readelf -h "$elf" | awk '/Entry point/ {print $4}')
            start=$(readelf -sW "$elf" | awk '$8 == "_start" {print $2}')
            if [ -z "$start" ] || [ $((entry)) -ne $((16#$start)) ]; then
                echo "$elf: entry $entry is not _start (${start:-missing})" >&2
                exit 1
            fi
        done
    fi
done

step "host example"
out=$(cargo run --release --features std --example host)
head -n 3 <<<"$out"
# The bare-metal examples print how to build them when built for the host.
msg=$(cargo run --quiet --example kernel 2>&1)
grep -q "x86_64-unknown-none" <<<"$msg"

step "rustdoc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --features std
for t in "${targets[@]}"; do
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --target "$t"
done
cargo test --doc --features std

step "MSRV"
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
echo "rust-version = $msrv; $(rustc +stable --version)"
cargo +stable build --features std

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    step "nightly feature"
    cargo +nightly build --features nightly
    cargo +nightly build --features nightly,std
    # std's own collections in a heap through core::alloc::Allocator.
    cargo +nightly test --features nightly,std --test allocator_nightly --test allocator_api
else
    echo "no nightly toolchain: nightly feature not built"
fi

echo
echo "examples, docs and MSRV checks passed"
