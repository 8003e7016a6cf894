#!/usr/bin/env bash
# Builds the aarch64 test kernel (release) and boots it in QEMU in every
# configuration below; exits non-zero if any run fails.
#
#   test-128M      -smp 4 -m 128M: the suite with little memory
#   test-1G        -smp 4 -m 1G: the suite with more memory
#   test-numa-512M two NUMA nodes, so two memory nodes in the device tree
#   test-el2-smc   virtualization=on: entry at EL2, PSCI through SMC
#   irq-20kHz      -m 256M with the timer at 20 kHz: many more interrupts
#                  allocating inside interrupted allocations
#   demo-256M      the demo workload (`-append demo`)
#   fault          `-append fault`: must die with an exception report (status 3)
#   panic          `-append panic`: must die with a panic report (status 2)
#
# Logs go to target/qemu-logs/. Installs the Rust target and QEMU when
# missing (a fresh CI machine has neither).
set -uo pipefail
cd "$(dirname "$0")"

if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-none; then
    rustup target add aarch64-unknown-none || exit 1
fi
if ! command -v qemu-system-aarch64 >/dev/null 2>&1; then
    echo "installing qemu-system-arm"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq qemu-system-arm || exit 1
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq qemu-system-arm || exit 1
    fi
fi

start=$(date +%s)
if ! cargo build --release; then
    echo "aarch64 qemu: build failed"
    echo "0 passed, 1 failed"
    exit 1
fi
kernel=target/aarch64-unknown-none/release/strata-qemu-aarch64
logs=target/qemu-logs
mkdir -p "$logs"

passed=0
failed=0
failures=()

# run_case NAME EXPECTED_STATUS EXPECTED_TEXT ENV... -- BOOTARGS...
run_case() {
    local name=$1 want=$2 text=$3
    shift 3
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        envs+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    local log=$logs/$name.log t0 t1 status=0
    t0=$(date +%s.%N)
    env "${envs[@]}" STRATA_QEMU_TIMEOUT="${STRATA_QEMU_TIMEOUT:-150}" \
        ./run-qemu.sh "$kernel" "$@" >"$log" 2>&1 || status=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    local cpus ranges tests irq
    cpus=$(grep -o 'smp: [0-9]* of [0-9]* CPUs online' "$log" | head -1 | awk '{print $2 "/" $4}')
    ranges=$(grep -o 'usable ([0-9]* ranges, [0-9]* KiB)' "$log" | head -1 | tr -d '()' | awk '{print $2 " ranges " int($4/1024) " MiB"}')
    tests=$(grep -o 'ktest: [0-9]* passed, [0-9]* failed, [0-9]* skipped' "$log" | tail -1 | sed 's/ktest: //')
    irq=$(grep -o 'timer: [0-9]* ticks, [0-9]* handlers allocated, [0-9]* found no memory, [0-9]* interrupted' "$log" \
        | tail -1 | awk '{print $4 " (" $11 " inside strata)"}')
    local ok=1
    [ "$status" = "$want" ] || ok=0
    grep -q -- "$text" "$log" || ok=0
    local line
    line=$(printf '%-15s status %-3s %6ss  cpus %-4s memory %-22s tests %-28s irq allocs %s' \
        "$name" "$status" "$secs" "${cpus:--}" "${ranges:--}" "${tests:--}" "${irq:--}")
    if [ $ok = 1 ]; then
        echo "PASS $line"
        passed=$((passed + 1))
    else
        echo "FAIL $line (wanted status $want and '$text'; log $log)"
        tail -n 40 "$log" | tr -d '\r' | sed 's/^/    | /'
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

numa="-object memory-backend-ram,id=m0,size=256M -object memory-backend-ram,id=m1,size=256M \
-numa node,memdev=m0,cpus=0-1 -numa node,memdev=m1,cpus=2-3"

run_case test-128M 0 "RESULT: PASS" STRATA_QEMU_MEM=128M
run_case test-1G 0 "RESULT: PASS" STRATA_QEMU_MEM=1G
run_case test-numa-512M 0 "RESULT: PASS" STRATA_QEMU_MEM=512M "STRATA_QEMU_ARGS=$numa"
run_case test-el2-smc 0 "RESULT: PASS" STRATA_QEMU_MEM=256M STRATA_QEMU_MACHINE=virt,virtualization=on
run_case irq-20kHz 0 "RESULT: PASS" STRATA_QEMU_MEM=256M -- timer-hz=20000
run_case demo-256M 0 "RESULT: PASS" STRATA_QEMU_MEM=256M -- demo
run_case fault 3 "FATAL EXCEPTION" STRATA_QEMU_MEM=128M -- fault
run_case panic 2 "PANIC on CPU" STRATA_QEMU_MEM=128M -- panic

echo "aarch64 qemu: $(($(date +%s) - start))s in all, logs in $logs"
if [ $failed -gt 0 ]; then
    echo "aarch64 qemu failed: ${failures[*]}"
fi
echo "aarch64-qemu: $passed passed, $failed failed"
[ $failed = 0 ]
