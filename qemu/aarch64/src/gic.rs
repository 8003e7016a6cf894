//! GICv2 driver: just enough to take one per-CPU interrupt (the timer PPI).
//!
//! The boot CPU enables the distributor once. Every CPU then enables the PPI
//! in its banked copy of the distributor's enable/priority registers and
//! turns on its own CPU interface. `-M virt` without `secure=on` has no
//! security extensions, so every interrupt is group 0 and signalled as IRQ.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::dtb::GicV2;
use crate::timer;

const GICD_CTLR: usize = 0x000;
const GICD_ISENABLER: usize = 0x100;
const GICD_IPRIORITYR: usize = 0x400;
const GICC_CTLR: usize = 0x000;
const GICC_PMR: usize = 0x004;
const GICC_IAR: usize = 0x00c;
const GICC_EOIR: usize = 0x010;
/// Interrupt IDs at or above this are special (1023 = spurious).
const SPECIAL_ID_BASE: u32 = 1020;
/// Priority given to the timer (lower is more urgent).
const TIMER_PRIORITY: u8 = 0xa0;
/// Priority mask: interrupts more urgent than this are signalled.
const PRIORITY_MASK: u32 = 0xf0;

static DISTRIBUTOR: AtomicUsize = AtomicUsize::new(0);
static CPU_INTERFACE: AtomicUsize = AtomicUsize::new(0);
static UNEXPECTED: AtomicU32 = AtomicU32::new(0);

fn write32(base: usize, offset: usize, value: u32) {
    // SAFETY: `base` is a GIC register window from the device tree, mapped
    // as Device memory; every offset used here is a 32-bit register in it.
    unsafe { ((base + offset) as *mut u32).write_volatile(value) }
}

fn read32(base: usize, offset: usize) -> u32 {
    // SAFETY: as in `write32`.
    unsafe { ((base + offset) as *const u32).read_volatile() }
}

/// Records the register windows and enables the distributor (boot CPU, once,
/// before any CPU enables its interface).
pub fn init_distributor(gic: GicV2) {
    DISTRIBUTOR.store(gic.distributor, Ordering::Relaxed);
    CPU_INTERFACE.store(gic.cpu_interface, Ordering::Relaxed);
    write32(gic.distributor, GICD_CTLR, 1);
}

/// Enables private interrupt `irq` and the CPU interface on the calling CPU.
pub fn init_cpu(irq: u32) {
    let gicd = DISTRIBUTOR.load(Ordering::Relaxed);
    let gicc = CPU_INTERFACE.load(Ordering::Relaxed);
    let irq = irq as usize;
    // SAFETY: GICD_IPRIORITYR is byte-accessible; the byte for a PPI is in
    // this CPU's banked copy.
    unsafe { ((gicd + GICD_IPRIORITYR + irq) as *mut u8).write_volatile(TIMER_PRIORITY) };
    write32(gicd, GICD_ISENABLER + (irq / 32) * 4, 1 << (irq % 32));
    write32(gicc, GICC_PMR, PRIORITY_MASK);
    write32(gicc, GICC_CTLR, 1);
}

/// Acknowledges, handles and ends one interrupt.
pub fn dispatch(elr: u64) {
    let gicc = CPU_INTERFACE.load(Ordering::Relaxed);
    let iar = read32(gicc, GICC_IAR);
    let id = iar & 0x3ff;
    if id >= SPECIAL_ID_BASE {
        return;
    }
    if id == timer::irq() {
        timer::on_interrupt(elr);
    } else {
        UNEXPECTED.fetch_add(1, Ordering::Relaxed);
    }
    write32(gicc, GICC_EOIR, iar);
}

/// Interrupts taken that no handler claimed.
pub fn unexpected_interrupts() -> u32 {
    UNEXPECTED.load(Ordering::Relaxed)
}
