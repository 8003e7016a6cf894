//! The serial console on COM1 (port 0x3F8), which QEMU connects to stdout.
//!
//! QEMU's UART works without programming the baud rate; the kernel only
//! polls the line status register's "transmit holding register empty" bit
//! before each byte. Output is serialised by a spin lock taken with
//! interrupts masked, so lines from different CPUs do not interleave and an
//! interrupt handler can never spin on a lock its own CPU holds. Printing
//! never allocates.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::cpu;
use crate::platform::IrqGuard;

const COM1: u16 = 0x3F8;
/// Line status register; bit 5: transmit holding register empty.
const LINE_STATUS: u16 = COM1 + 5;
const TRANSMIT_EMPTY: u8 = 1 << 5;

/// Owner of the console lock: a CPU index, or [`UNLOCKED`].
static OWNER: AtomicUsize = AtomicUsize::new(UNLOCKED);
const UNLOCKED: usize = usize::MAX;

struct Com1;

impl Write for Com1 {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            // SAFETY: COM1 is the console device and only this module drives
            // it; polling LSR and writing THR have no other effect.
            unsafe {
                while cpu::inb(LINE_STATUS) & TRANSMIT_EMPTY == 0 {
                    core::hint::spin_loop();
                }
                cpu::outb(COM1, byte);
            }
        }
        Ok(())
    }
}

/// Prints `args` and a newline as one unbroken line group.
pub fn print_line(args: fmt::Arguments<'_>) {
    let _irq = IrqGuard::new();
    let me = crate::percpu::index();
    // A CPU that faults or panics while printing must still be able to
    // print its report: it takes the console over from itself.
    let reentered = OWNER.load(Ordering::Relaxed) == me;
    if !reentered {
        while OWNER
            .compare_exchange_weak(UNLOCKED, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }
    let _ = Com1.write_fmt(args);
    let _ = Com1.write_str("\n");
    if !reentered {
        OWNER.store(UNLOCKED, Ordering::Release);
    }
}

/// Prints to the serial console, with a newline.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::serial::print_line(format_args!($($arg)*))
    };
}
