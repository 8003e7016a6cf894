//! Per-CPU data, reached through the GS segment base.
//!
//! Each CPU points IA32_GS_BASE at its own [`PerCpu`] as the first thing it
//! does in Rust. The dense CPU index sits at a fixed offset, so reading it
//! (which strata does on every allocation, through
//! `Platform::cpu_id`) is a single `mov rax, gs:[8]`: no CPUID, no table
//! lookup, no lock.

use core::arch::asm;
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::cpu;

/// Most CPUs the kernel starts; more halt in the trampoline.
pub const MAX_CPUS: usize = 16;

/// A CPU's verdict on the kernel's main function.
pub const RESULT_RUNNING: u8 = 0;
pub const RESULT_PASSED: u8 = 1;
pub const RESULT_FAILED: u8 = 2;

/// What each CPU keeps about itself. Fields are atomics because other CPUs
/// read them (for reports) while the owner updates them.
#[repr(C)]
pub struct PerCpu {
    /// gs:0, this structure's own address.
    self_addr: AtomicUsize,
    /// gs:8, the dense CPU index.
    index: AtomicUsize,
    /// The CPU's local APIC id.
    pub apic_id: AtomicU32,
    /// Timer interrupts taken.
    pub timer_ticks: AtomicU64,
    /// Timer interrupts whose allocations all succeeded.
    pub timer_allocations: AtomicU64,
    /// Timer interrupts in which an allocation returned null.
    pub timer_out_of_memory: AtomicU64,
    /// Set while the timer handler may hold heap memory.
    pub in_background_work: AtomicBool,
    /// The result of the kernel's main function on this CPU.
    pub result: AtomicU8,
}

const _: () = assert!(offset_of!(PerCpu, index) == 8);

static CPUS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        self_addr: AtomicUsize::new(0),
        index: AtomicUsize::new(usize::MAX),
        apic_id: AtomicU32::new(u32::MAX),
        timer_ticks: AtomicU64::new(0),
        timer_allocations: AtomicU64::new(0),
        timer_out_of_memory: AtomicU64::new(0),
        in_background_work: AtomicBool::new(false),
        result: AtomicU8::new(RESULT_RUNNING),
    }
}; MAX_CPUS];

/// Makes `index` the calling CPU's index: fills its [`PerCpu`] and points
/// GS at it. Called once per CPU, before anything reads [`index`].
pub fn install(index: usize) {
    let this = &CPUS[index];
    this.self_addr
        .store(this as *const PerCpu as usize, Ordering::Relaxed);
    this.index.store(index, Ordering::Relaxed);
    this.apic_id.store(cpu::apic_id(), Ordering::Relaxed);
    // SAFETY: IA32_GS_BASE exists on every x86_64 CPU; pointing it at this
    // CPU's static PerCpu is what `index` relies on, and nothing else in
    // the kernel uses GS.
    unsafe { cpu::wrmsr(cpu::MSR_GS_BASE, this as *const PerCpu as u64) }
}

/// The calling CPU's dense index.
#[inline]
pub fn index() -> usize {
    let index: usize;
    // SAFETY: GS points at this CPU's PerCpu (installed first thing on
    // every CPU), whose `index` field is at offset 8 (asserted above); the
    // load has no side effect.
    unsafe { asm!("mov {}, gs:[8]", out(reg) index, options(nostack, readonly, preserves_flags)) }
    index
}

/// The calling CPU's data.
pub fn current() -> &'static PerCpu {
    &CPUS[index()]
}

/// CPU `index`'s data.
pub fn get(index: usize) -> &'static PerCpu {
    &CPUS[index]
}
