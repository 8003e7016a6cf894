//! The local APIC (xAPIC, memory-mapped at 0xFEE0_0000): enabling it,
//! its periodic timer, end-of-interrupt, and the INIT/SIPI IPIs that start
//! the application processors.
//!
//! The identity map covers the APIC page; `paging` marks it uncached.

use crate::cpu;

/// Physical (= virtual) base of the local APIC's registers.
pub const BASE: u64 = 0xFEE0_0000;

const REG_TPR: usize = 0x080;
const REG_EOI: usize = 0x0B0;
const REG_SPURIOUS: usize = 0x0F0;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3E0;

/// SVR bit 8: APIC software enable.
const SPURIOUS_ENABLE: u32 = 1 << 8;
/// LVT bit 16: masked; bit 17: periodic timer mode.
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
/// Timer divide configuration 0b0011: divide by 16.
const DIVIDE_BY_16: u32 = 0x3;
/// ICR: delivery status (send pending), level assert, and the
/// "all excluding self" destination shorthand.
const ICR_PENDING: u32 = 1 << 12;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
/// IA32_APIC_BASE bit 11: the APIC is globally enabled.
const APIC_BASE_ENABLE: u64 = 1 << 11;

/// Interrupt vector of the periodic timer.
pub const TIMER_VECTOR: u8 = 0x30;
/// Interrupt vector for spurious interrupts (low 4 bits all ones).
pub const SPURIOUS_VECTOR: u8 = 0xFF;

fn read(reg: usize) -> u32 {
    // SAFETY: BASE is the identity-mapped, uncached APIC page and `reg` one
    // of its 16-byte aligned registers; reading has no memory effect.
    unsafe { ((BASE as usize + reg) as *const u32).read_volatile() }
}

fn write(reg: usize, value: u32) {
    // SAFETY: as in `read`; each register written here is documented to
    // take the value given by its caller.
    unsafe { ((BASE as usize + reg) as *mut u32).write_volatile(value) }
}

/// Enables the calling CPU's local APIC and accepts every priority.
/// Fails if the APIC is not at [`BASE`] or globally disabled.
pub fn enable() -> Result<(), &'static str> {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    let msr = unsafe { cpu::rdmsr(cpu::MSR_APIC_BASE) };
    if msr & 0xF_FFFF_F000 != BASE {
        return Err("the local APIC is not at 0xFEE00000");
    }
    if msr & APIC_BASE_ENABLE == 0 {
        return Err("the local APIC is globally disabled");
    }
    write(REG_SPURIOUS, SPURIOUS_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(REG_TPR, 0);
    Ok(())
}

/// Signals the end of the interrupt being handled.
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}

/// Starts the periodic timer: an interrupt on [`TIMER_VECTOR`] every
/// `initial_count` ticks of the bus clock divided by 16.
pub fn start_periodic_timer(initial_count: u32) {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_PERIODIC | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INITIAL, initial_count);
}

/// Stops the timer.
pub fn stop_timer() {
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INITIAL, 0);
}

/// Starts the timer counting down from `u32::MAX` with its interrupt
/// masked, for calibration; [`timer_elapsed`] reads how far it got.
pub fn start_calibration_count() {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INITIAL, u32::MAX);
}

/// Ticks (bus clock / 16) since [`start_calibration_count`].
pub fn timer_elapsed() -> u32 {
    u32::MAX - read(REG_TIMER_CURRENT)
}

fn send_ipi(low: u32) {
    write(REG_ICR_HIGH, 0);
    write(REG_ICR_LOW, low);
    while read(REG_ICR_LOW) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
}

/// Sends INIT to every other CPU.
pub fn send_init_to_others() {
    send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
}

/// Sends a start-up IPI to every other CPU: they start in real mode at
/// physical address `page << 12`.
pub fn send_startup_to_others(page: u8) {
    send_ipi(ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | u32::from(page));
}
