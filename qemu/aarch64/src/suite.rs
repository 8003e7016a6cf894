//! The shared in-kernel test suite (`qemu/ktest`) wired to this kernel.
//!
//! [`Board`] answers the suite's questions about the machine: the heap, the
//! CPU count and dense index (`TPIDR_EL1`), the serial console, a clock from
//! the generic timer's virtual counter, and the timer interrupt's allocation
//! counts and pause switch.

use strata_alloc::Heap;

use crate::platform::{HEAP, KernelPlatform};
use crate::{console, cpu, kernel, timer};

/// Physical limits the suite asks `PageRequest::below` to honour: the first
/// 128 MiB of RAM (RAM starts at 1 GiB on `-M virt`) and the 32-bit DMA
/// limit.
const PAGE_LIMITS: &[u64] = &[0x4800_0000, 0x1_0000_0000];

/// This kernel as the suite's `Machine`.
pub struct Board;

impl strata_ktest::Machine for Board {
    type Platform = KernelPlatform;

    fn heap(&self) -> &'static Heap<KernelPlatform> {
        &HEAP
    }

    fn cpu_count(&self) -> usize {
        kernel::cpu_count()
    }

    fn cpu_index(&self) -> usize {
        cpu::cpu_index()
    }

    fn print(&self, args: core::fmt::Arguments<'_>) {
        console::print(format_args!("{args}\n"));
    }

    fn time_us(&self) -> u64 {
        cpu::counter_to_ns(cpu::counter()) / 1000
    }

    fn timer_allocations(&self, cpu: usize) -> Option<u64> {
        Some(timer::TickTotals::of(timer::counts(cpu)).allocated)
    }

    fn pause_background(&self, paused: bool) {
        timer::set_allocating(!paused);
    }
}

fn config(baseline_free_pages: u64) -> strata_ktest::Config {
    strata_ktest::Config {
        baseline_free_pages,
        page_limits: PAGE_LIMITS,
        phys_offset: 0,
    }
}

/// Runs the whole suite on the calling CPU (every CPU calls it at once);
/// true if every test passed on every CPU.
pub fn run(baseline_free_pages: u64) -> bool {
    strata_ktest::run(&Board, &config(baseline_free_pages))
}

/// Runs the suite's demo workload on the calling CPU (every CPU at once).
pub fn demo(baseline_free_pages: u64) -> bool {
    strata_ktest::demo(&Board, &config(baseline_free_pages))
}
