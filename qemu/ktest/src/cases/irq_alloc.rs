//! `irq_alloc`: interrupt handlers allocated, nested inside allocations.
//!
//! The kernel's periodic timer interrupt allocates and frees (checking the
//! contents) on every CPU while the tests before this one allocated on the
//! same CPU. Each CPU checks the kernel's count of interrupts that
//! allocated on it: zero fails the test.
//!
//! Whether an interrupt ever arrived in the middle of an allocation shows
//! in strata's per-CPU `fallbacks` counter: an operation that finds its
//! CPU's cache already claimed (by the code the interrupt suspended, as
//! this suite's kernels have no scheduler) takes the central path and
//! counts one. CPU 0 reports the total over all CPUs and fails if it is
//! zero, since then the nesting was never exercised. Kernels that do not
//! allocate in interrupts skip the test.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::note::{fail, passed, skipped};
use crate::{Ctx, Machine, TestResult};

/// Sum of every CPU's `fallbacks`, collected before CPU 0 reads it.
static NESTED: AtomicU64 = AtomicU64::new(0);

pub fn run<M: Machine>(ctx: &Ctx<'_, M>) -> TestResult {
    let Some(interrupts) = ctx.m.timer_allocations(ctx.cpu) else {
        return skipped!("the kernel does not allocate in interrupts");
    };
    let stats = ctx.heap().stats();
    let nested = stats.per_cpu.get(ctx.cpu).map_or(0, |cpu| cpu.fallbacks);
    NESTED.fetch_add(nested, Ordering::Relaxed);
    ctx.barrier()?;
    if interrupts == 0 {
        fail!("no interrupt allocated on this CPU");
    }
    if ctx.cpu == 0 {
        let total = NESTED.load(Ordering::Relaxed);
        if total == 0 {
            fail!("{interrupts} interrupts allocated here, but none ever arrived inside an allocation");
        }
        return passed!("{interrupts} interrupts allocated; {nested} allocator calls here ({total} on all CPUs) found the cache claimed by the interrupted code");
    }
    passed!("{interrupts} interrupts allocated; {nested} allocator calls found the cache claimed by the interrupted code")
}
