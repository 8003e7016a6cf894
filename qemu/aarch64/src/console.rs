//! Serial console on QEMU's PL011 UART, shared by all CPUs.
//!
//! The UART needs no setup under QEMU: the kernel polls the flag register's
//! "transmit FIFO full" bit and writes the data register. Its base address
//! comes from the device tree once that is parsed; until then the `-M virt`
//! default is used. One lock serialises whole messages, taken with IRQs
//! masked; a panic takes it with a bounded wait so a CPU that died holding it
//! cannot silence the report.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::cpu::IrqGuard;

/// PL011 base address on QEMU's `-M virt`, used before the device tree is read.
pub const DEFAULT_PL011_BASE: usize = 0x0900_0000;
/// Data register offset.
const UARTDR: usize = 0x00;
/// Flag register offset.
const UARTFR: usize = 0x18;
/// `UARTFR.TXFF`: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;

static BASE: AtomicUsize = AtomicUsize::new(DEFAULT_PL011_BASE);
static LOCK: AtomicBool = AtomicBool::new(false);

/// Uses the PL011 at `base` (from the device tree) from now on.
pub fn set_base(base: usize) {
    BASE.store(base, Ordering::Relaxed);
}

struct Uart {
    base: usize,
}

impl Uart {
    fn put_byte(&self, byte: u8) {
        let fr = (self.base + UARTFR) as *const u32;
        let dr = (self.base + UARTDR) as *mut u32;
        // SAFETY: `base` is the PL011 MMIO window (identity-mapped as Device
        // memory); FR and DR are 32-bit registers inside it.
        unsafe {
            while fr.read_volatile() & FR_TXFF != 0 {}
            dr.write_volatile(u32::from(byte));
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put_byte(b'\r');
            }
            self.put_byte(b);
        }
        Ok(())
    }
}

/// Writes one formatted message atomically with respect to other CPUs.
pub fn print(args: fmt::Arguments<'_>) {
    let _irq = IrqGuard::new();
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    let _ = Uart {
        base: BASE.load(Ordering::Relaxed),
    }
    .write_fmt(args);
    LOCK.store(false, Ordering::Release);
}

/// Writes a message from a panic or fatal exception: waits a bounded time
/// for the lock, then prints regardless.
pub fn print_emergency(args: fmt::Arguments<'_>) {
    let _irq = IrqGuard::new();
    let mut owned = false;
    for _ in 0..10_000_000 {
        if LOCK
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            owned = true;
            break;
        }
        core::hint::spin_loop();
    }
    let _ = Uart {
        base: BASE.load(Ordering::Relaxed),
    }
    .write_fmt(args);
    if owned {
        LOCK.store(false, Ordering::Release);
    }
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
