//! Time: the TSC, calibrated once against the legacy PIT, and the local
//! APIC timer's rate, measured in the same window.
//!
//! The PIT's channel 2 runs at 1.193182 MHz and its output can be read
//! back through port 0x61, so it can time a fixed window without
//! interrupts: the same method Linux uses to calibrate the TSC.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::{apic, cpu};

/// PIT input clock, in Hz.
const PIT_HZ: u64 = 1_193_182;
/// One calibration window, in microseconds.
const WINDOW_US: u64 = 5_000;
/// Windows measured; the shortest counts.
const WINDOWS: usize = 5;
const PIT_CHANNEL2: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
/// Port 0x61: bit 0 gates channel 2, bit 1 drives the speaker, bit 5
/// reads channel 2's output.
const PORT_B: u16 = 0x61;

static TSC_PER_MHZ: AtomicU64 = AtomicU64::new(1);
static TSC_ORIGIN: AtomicU64 = AtomicU64::new(0);
static APIC_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

/// Measures the TSC and APIC timer rates against the PIT. Call once, on the
/// bootstrap CPU, with its APIC enabled.
///
/// The guest notices the end of a window only when it next polls; if the
/// emulator's thread is descheduled meanwhile, that window comes out long
/// (and both rates too high). So it measures [`WINDOWS`] windows and keeps
/// the shortest, as Linux does.
pub fn calibrate() {
    let (tsc, apic) = (0..WINDOWS)
        .map(|_| measure_window())
        .min_by_key(|&(tsc, _)| tsc)
        .unwrap_or((WINDOW_US, 0));
    TSC_PER_MHZ.store((tsc / WINDOW_US).max(1), Ordering::Relaxed);
    APIC_TICKS_PER_MS.store(u64::from(apic) * 1000 / WINDOW_US, Ordering::Relaxed);
    TSC_ORIGIN.store(cpu::rdtsc(), Ordering::Relaxed);
}

/// TSC ticks and APIC timer ticks during one [`WINDOW_US`] PIT window.
fn measure_window() -> (u64, u32) {
    let count = (PIT_HZ * WINDOW_US / 1_000_000) as u16;
    // SAFETY: the PIT and port 0x61 belong to the kernel and nothing else
    // uses them; channel 2 drives only the (disabled) speaker.
    let measured = unsafe {
        let port_b = cpu::inb(PORT_B);
        cpu::outb(PORT_B, (port_b & !0x02) | 0x01); // gate on, speaker off
        cpu::outb(PIT_COMMAND, 0b1011_0000); // channel 2, lo/hi byte, mode 0
        cpu::outb(PIT_CHANNEL2, count as u8);
        let start = cpu::rdtsc();
        apic::start_calibration_count();
        cpu::outb(PIT_CHANNEL2, (count >> 8) as u8); // counting starts here
        while cpu::inb(PORT_B) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        (cpu::rdtsc() - start, apic::timer_elapsed())
    };
    apic::stop_timer();
    measured
}

/// Microseconds since calibration.
pub fn now_us() -> u64 {
    cpu::rdtsc().saturating_sub(TSC_ORIGIN.load(Ordering::Relaxed))
        / TSC_PER_MHZ.load(Ordering::Relaxed)
}

/// TSC ticks per microsecond.
pub fn tsc_mhz() -> u64 {
    TSC_PER_MHZ.load(Ordering::Relaxed)
}

/// APIC timer ticks (divided by 16) per millisecond.
pub fn apic_ticks_per_ms() -> u64 {
    APIC_TICKS_PER_MS.load(Ordering::Relaxed)
}

/// Busy-waits for `us` microseconds.
pub fn delay_us(us: u64) {
    let end = now_us() + us;
    while now_us() < end {
        core::hint::spin_loop();
    }
}
