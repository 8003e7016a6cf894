//! Thin wrappers around the x86 instructions the kernel uses: port I/O,
//! MSRs, CPUID, the time stamp counter, control registers and the
//! interrupt flag. Each wrapper states what makes it safe or what its
//! caller must guarantee.

use core::arch::asm;

/// IA32_APIC_BASE: the local APIC's physical base and enable bit.
pub const MSR_APIC_BASE: u32 = 0x1B;
/// IA32_GS_BASE: the GS segment base, which points at this CPU's
/// per-CPU area.
pub const MSR_GS_BASE: u32 = 0xC000_0101;

/// RFLAGS.IF: maskable interrupts enabled.
const RFLAGS_IF: u64 = 1 << 9;

/// Writes a byte to an I/O port.
///
/// # Safety
/// Port writes drive devices; the caller must own the device behind `port`.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller owns the device; `out` touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 16-bit word to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: the caller owns the device; `out` touches no memory.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 32-bit word to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller owns the device; `out` touches no memory.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Port reads can have side effects on devices; the caller must own the
/// device behind `port`.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller owns the device; `in` touches no memory.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a model-specific register.
///
/// # Safety
/// `msr` must exist on this CPU (or `rdmsr` raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists; reading it has no side
    // effect on memory.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes a model-specific register.
///
/// # Safety
/// `msr` must exist and `value` must be valid for it; the caller is
/// responsible for what the new value changes (e.g. the GS base).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid and intended.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// The APIC id of the calling CPU: CPUID leaf 1, EBX bits 31..24.
pub fn apic_id() -> u32 {
    let leaf = core::arch::x86_64::__cpuid(1);
    leaf.ebx >> 24
}

/// The time stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86_64 CPU and only reads.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CR2: the address of the last page fault.
pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effect; the kernel runs at CPL 0.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// CR3: the physical address of the PML4.
pub fn cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effect; the kernel runs at CPL 0.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Reloads CR3 with its current value, flushing the TLB (except global
/// pages, which the kernel does not use).
pub fn flush_tlb() {
    let value = cr3();
    // SAFETY: writing back the current PML4 keeps every mapping as it is
    // and only drops cached translations.
    unsafe { asm!("mov cr3, {}", in(reg) value, options(nostack, preserves_flags)) }
}

/// Whether maskable interrupts are enabled on this CPU.
pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack; no other effect.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) }
    flags & RFLAGS_IF != 0
}

/// Masks interrupts on this CPU.
pub fn disable_interrupts() {
    // SAFETY: masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Unmasks interrupts on this CPU.
///
/// # Safety
/// The IDT must be loaded and every interrupt source that can fire must
/// have a handler, and no code on this CPU may rely on interrupts staying
/// masked (e.g. hold a lock that an interrupt handler takes).
pub unsafe fn enable_interrupts() {
    // SAFETY: the caller guarantees handlers are in place.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Halts this CPU for good, with interrupts masked.
pub fn halt_forever() -> ! {
    loop {
        disable_interrupts();
        // SAFETY: HLT only waits; with interrupts masked it waits forever.
        unsafe { asm!("hlt", options(nomem, nostack)) }
    }
}
