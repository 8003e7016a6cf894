#!/usr/bin/env bash
# Instructions (Ir) per alloc+free pair, counted by callgrind.
#
#   bench/callgrind.sh            # every allocator, 64 B and 256 B
#   N=20000 bench/callgrind.sh    # fewer pairs
#
# For each allocator and size, runs `ir ALLOCATOR SIZE N` and `ir ALLOCATOR
# SIZE 0` under `valgrind --tool=callgrind`; both do the same warm-up of
# 10,000 pairs of that size first, so the difference of the two totals
# divided by N is the cost of one warm pair (plus the loop and shim calls,
# which the row for `none`, an allocator that does nothing, measures).
# Prints a markdown table and writes it to bench/results/IR.md.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
N="${N:-100000}"
SIZES="${SIZES:-64 256}"

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin ir
bin="$here/target/release/ir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Total Ir of one run.
total_ir() {
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$@" >"$tmp/log" 2>&1 || {
        cat "$tmp/log" >&2
        echo "callgrind.sh: run failed: ir $*" >&2
        exit 1
    }
    awk '/^(summary|totals):/ { print $2; exit }' "$tmp/out"
}

table="| allocator |"
rule="|---|"
for s in $SIZES; do
    table+=" $s B |"
    rule+="---:|"
done
table+=$'\n'"$rule"
# One row: `row NAME ALLOCATOR` (environment as set by the caller).
row() {
    local r="| $1 |"
    for s in $SIZES; do
        base="$(total_ir "$2" "$s" 0)"
        full="$(total_ir "$2" "$s" "$N")"
        r+=" $(awk -v f="$full" -v b="$base" -v n="$N" 'BEGIN { printf "%.1f", (f - b) / n }') |"
    done
    echo "$r" >&2
    table+=$'\n'"$r"
}
row "(loop and shims only)" none
row "(floor: bare per-thread stack, no claim, check or statistics)" floor
for a in $("$bin" --list); do
    row "$a" "$a"
done
# strata without checked frees (`Heap::with_debug(DebugFlags::empty())`).
for a in strata strata-np; do
    STRATA_UNCHECKED=1 row "$a, unchecked frees" "$a"
done
# strata's page API: alloc_pages + free_pages of one page (size ignored).
row "strata, one page through the page API" strata-pages

out="# Instructions per alloc+free pair (callgrind)

Ir of N = $N warm pairs (align 8) through non-inlined shims, minus a run
with N = 0 and the same warm-up of 10,000 pairs; divided by N. Each figure includes the loop and the two non-inlined shim
calls; the first row measures them alone (an allocator that does nothing),
the second a bare per-thread stack of free objects per size class, with
none of the claim, CPU-id bound, free check or statistics an allocator
needs (\`baseline::Floor\`). \`valgrind --version\`: $(valgrind --version).
Produced by \`bench/callgrind.sh\`.

$table"
echo "$out"
mkdir -p "$here/results"
echo "$out" >"$here/results/IR.md"
