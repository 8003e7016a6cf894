//! Small wrappers around AArch64 system registers and instructions used by
//! the kernel: the CPU index in `TPIDR_EL1`, the IRQ mask in `DAIF`, the
//! generic timer counter and the event/wait instructions.

use core::arch::asm;
use core::marker::PhantomData;

/// Affinity fields of `MPIDR_EL1` (Aff3, Aff2, Aff1, Aff0); the same value
/// the device tree's `/cpus/cpu@N` `reg` holds and PSCI `CPU_ON` expects.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// `DAIF.I`: IRQs masked when set.
const DAIF_I: u64 = 1 << 7;

/// Affinity of the calling CPU.
pub fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v & MPIDR_AFFINITY_MASK
}

/// Dense index of the calling CPU, as stored by [`set_cpu_index`].
#[inline]
pub fn cpu_index() -> usize {
    let v: u64;
    // SAFETY: reading TPIDR_EL1 has no side effects; the boot code sets it on
    // every CPU before any Rust code runs (0 on the boot CPU until its index
    // is known).
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v as usize
}

/// Records the calling CPU's dense index for [`cpu_index`].
pub fn set_cpu_index(index: usize) {
    // SAFETY: TPIDR_EL1 is a software thread-id register that nothing else
    // in this kernel uses.
    unsafe {
        asm!("msr tpidr_el1, {}", in(reg) index as u64, options(nomem, nostack, preserves_flags))
    };
}

/// Whether IRQs are currently masked on this CPU.
pub fn irqs_masked() -> bool {
    let daif: u64;
    // SAFETY: reading DAIF has no side effects.
    unsafe { asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags)) };
    daif & DAIF_I != 0
}

/// Unmasks IRQs on this CPU.
///
/// # Safety
/// The vectors, the GIC CPU interface and every interrupt source that can
/// fire must be ready, and no caller up the stack may rely on IRQs staying
/// masked.
pub unsafe fn enable_irqs() {
    // SAFETY: the caller guarantees an IRQ can be taken now. `daifclr` is a
    // compiler barrier here (no `nomem`), so memory accesses are not moved
    // out of the masked section.
    unsafe { asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Masks IRQs on this CPU.
pub fn disable_irqs() {
    // SAFETY: masking interrupts cannot break any invariant; it is also a
    // compiler barrier (no `nomem`).
    unsafe { asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// IRQs masked on this CPU until dropped; drop restores the state found at
/// creation (so guards nest). Not `Send`: it must drop on the CPU that
/// created it.
pub struct IrqGuard {
    was_masked: bool,
    _not_send: PhantomData<*const ()>,
}

impl IrqGuard {
    /// Masks IRQs and remembers whether they were masked before.
    #[inline]
    pub fn new() -> Self {
        let was_masked = irqs_masked();
        disable_irqs();
        Self {
            was_masked,
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
        if !self.was_masked {
            // SAFETY: IRQs were unmasked when this guard was made, so the
            // code that made it was already prepared to take them.
            unsafe { enable_irqs() };
        }
    }
}

/// Checks that guards mask IRQs, nest, and restore the unmasked state the
/// caller had (call with IRQs unmasked).
pub fn irq_guard_works() -> bool {
    let unmasked_before = !irqs_masked();
    let outer = IrqGuard::new();
    let masked_outer = irqs_masked();
    let inner = IrqGuard::new();
    drop(inner);
    let still_masked = irqs_masked();
    drop(outer);
    let restored = !irqs_masked();
    unmasked_before && masked_outer && still_masked && restored
}

/// Frequency of the generic timer counter in Hz (`CNTFRQ_EL0`).
pub fn counter_frequency() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Current value of the virtual counter (`CNTVCT_EL0`).
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effects; the `isb` keeps the
    // read from being hoisted above earlier instructions.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Nanoseconds elapsed between two [`counter`] values.
pub fn counter_to_ns(ticks: u64) -> u64 {
    let freq = counter_frequency().max(1);
    (u128::from(ticks) * 1_000_000_000 / u128::from(freq)) as u64
}

/// Waits for an event (`wfe`); used by parked CPUs and spin loops.
#[inline]
pub fn wait_for_event() {
    // SAFETY: `wfe` only pauses this CPU until an event or interrupt.
    unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

/// Wakes CPUs waiting in `wfe`.
#[inline]
pub fn send_event() {
    // SAFETY: `sev` only signals an event to all CPUs.
    unsafe { asm!("dsb ish", "sev", options(nostack, preserves_flags)) };
}

/// Waits for an interrupt (`wfi`).
#[inline]
pub fn wait_for_interrupt() {
    // SAFETY: `wfi` only pauses this CPU until an interrupt is pending.
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}
