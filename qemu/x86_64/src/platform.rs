//! [`KernelPlatform`]: what strata needs to know about this kernel.
//!
//! - `NON_PREEMPTIVE`: no scheduler, so only interrupt handlers interrupt
//!   allocator code, and they run to completion on the same CPU.
//! - `cpu_id` is the dense index from the per-CPU area (one GS-relative
//!   load, see `percpu`).
//! - `disable_interrupts` really masks interrupts (`cli`) and the guard
//!   restores the previous state on drop, so strata's locks are never
//!   contended by a timer interrupt on the same CPU, and guards nest.

use core::marker::PhantomData;

use crate::{cpu, percpu};

/// The kernel's `strata_alloc::Platform`.
pub struct KernelPlatform;

impl strata_alloc::Platform for KernelPlatform {
    type IrqGuard = IrqGuard;

    /// This kernel has no scheduler: code inside strata is only ever
    /// suspended by an interrupt handler, which runs to completion on the
    /// same CPU before the code resumes, and no two contexts share a CPU id.
    /// strata can then claim a CPU cache with a plain load and store.
    const NON_PREEMPTIVE: bool = true;

    #[inline]
    fn cpu_id() -> usize {
        percpu::index()
    }

    #[inline]
    fn disable_interrupts() -> IrqGuard {
        IrqGuard::new()
    }
}

/// Interrupts stay masked on this CPU while a guard lives; dropping it
/// restores the interrupt flag as it was when the guard was made.
pub struct IrqGuard {
    was_enabled: bool,
    /// The guard describes this CPU's state: it must not move to another.
    _not_send: PhantomData<*mut ()>,
}

impl IrqGuard {
    /// Masks interrupts, remembering whether they were enabled.
    #[inline]
    pub fn new() -> Self {
        let was_enabled = cpu::interrupts_enabled();
        cpu::disable_interrupts();
        IrqGuard {
            was_enabled,
            _not_send: PhantomData,
        }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    #[inline]
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: interrupts were enabled when this guard was made, so
            // the handlers were in place and the code around the guard
            // expects them on; guards are dropped in reverse order of
            // creation, so no inner guard still needs them masked.
            unsafe { cpu::enable_interrupts() }
        }
    }
}
