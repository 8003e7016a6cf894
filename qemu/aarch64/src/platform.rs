//! The `strata_alloc::Platform` of this kernel and the global heap.
//!
//! The CPU id is the dense index the boot code stored in `TPIDR_EL1` (one
//! `mrs`); the interrupt guard masks IRQs through `DAIF` and restores the
//! previous state on drop, so strata never spins on a lock with IRQs on.

use crate::cpu::{self, IrqGuard};

/// Platform hooks for strata on this kernel.
pub struct KernelPlatform;

impl strata_alloc::Platform for KernelPlatform {
    type IrqGuard = IrqGuard;

    #[inline]
    fn cpu_id() -> usize {
        cpu::cpu_index()
    }

    #[inline]
    fn disable_interrupts() -> IrqGuard {
        IrqGuard::new()
    }
}

/// The kernel heap: every `Box`, `Vec` and page allocation comes from here.
#[global_allocator]
pub static HEAP: strata_alloc::Heap<KernelPlatform> = strata_alloc::Heap::new();
