#!/usr/bin/env bash
# Mutation testing of the allocator's layers with cargo-mutants: every
# mutant of the files below is built and run against the host suite
# (`cargo test --features std`); a mutant that no test fails "survives".
# Not part of CI: on a 2-core machine the full run takes about an hour.
#
#   scripts/mutants.sh                  the five layer files
#   scripts/mutants.sh src/span.rs      one file
#   MUTANTS_JOBS=2 scripts/mutants.sh   two builds at once
#
# Results go to target/mutants/mutants.out (`caught.txt`, `missed.txt`,
# `timeout.txt`, `unviable.txt`); the kill rate of a file is
# caught / (caught + missed), timeouts counted as caught.
#
# Survivors that are equivalent (they change only speed, a statistic, or a
# placement choice that no contract fixes), so no test can kill them; each
# was checked by hand:
# * `Span::push`'s `|| inuse == 0` dropped: an empty span has `carved == 0`
#   (it was reset or retired), so the `index >= carved` test already fails.
# * `Span::pop_into` not clearing an object's first word when it leaves the
#   free list: the next push of that object walks the free list, finds
#   nothing, and goes on (speed only).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants >/dev/null 2>&1; then
    cargo install cargo-mutants --locked
fi
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    files=(src/span.rs src/buddy.rs src/heap.rs src/cpu_cache.rs src/central.rs)
fi
args=()
for f in "${files[@]}"; do
    args+=(--file "$f")
done
cargo mutants "${args[@]}" --jobs "${MUTANTS_JOBS:-1}" --output target/mutants \
    --timeout-multiplier 3 -- --features std || true
out=target/mutants/mutants.out
for f in "${files[@]}"; do
    c=$( (grep -h "^$f:" "$out/caught.txt" "$out/timeout.txt" 2>/dev/null || true) | wc -l)
    m=$( (grep -h "^$f:" "$out/missed.txt" 2>/dev/null || true) | wc -l)
    awk -v f="$f" -v c="$c" -v m="$m" \
        'BEGIN { t = c + m; printf "%-20s %4d caught, %4d missed: %.1f %%\n", f, c, m, t ? 100 * c / t : 0 }'
done
