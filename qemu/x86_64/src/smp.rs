//! Starting the application processors.
//!
//! The bootstrap CPU copies the trampoline (see `boot`) to
//! [`TRAMPOLINE_BASE`] and broadcasts INIT, then two start-up IPIs, to
//! every other CPU, with the delays the MP specification asks for (10 ms
//! after INIT, 200 µs between SIPIs; a CPU already running ignores the
//! second SIPI). The APs pick their dense indices themselves, in arrival
//! order, so the kernel needs no list of APIC ids: it only needs to know
//! how many CPUs to wait for, which QEMU's `fw_cfg` tells
//! ([`crate::qemu::cpu_count`]).
//!
//! Each AP, once in Rust, installs its per-CPU area, loads the IDT,
//! enables its APIC, counts itself in [`ONLINE`] and waits for
//! [`release`] before running the kernel's main function.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::boot::{ap_trampoline_end, ap_trampoline_start, TRAMPOLINE_BASE};
use crate::{apic, time};

/// CPUs running Rust code, the bootstrap CPU included.
pub static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Set when every CPU may start the kernel's main function.
static RELEASED: AtomicBool = AtomicBool::new(false);

/// How long to wait for the APs to come up.
const STARTUP_TIMEOUT_US: u64 = 2_000_000;

/// Starts every other CPU and waits (bounded) until `expected` CPUs in all
/// are online. Returns how many are.
pub fn start_application_processors(expected: usize) -> usize {
    let start = core::ptr::addr_of!(ap_trampoline_start);
    let end = core::ptr::addr_of!(ap_trampoline_end);
    let length = end as usize - start as usize;
    assert!(length <= 4096, "the AP trampoline must fit in one page");
    // SAFETY: the trampoline page below 1 MiB is identity-mapped RAM that is
    // excluded from the heap (memmap::LOW_RESERVED) and used by nothing
    // else; the source is the trampoline's bytes in the kernel image.
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE_BASE as *mut u8, length) };

    apic::send_init_to_others();
    time::delay_us(10_000);
    for _ in 0..2 {
        apic::send_startup_to_others((TRAMPOLINE_BASE >> 12) as u8);
        time::delay_us(200);
    }
    let deadline = time::now_us() + STARTUP_TIMEOUT_US;
    while ONLINE.load(Ordering::Acquire) < expected && time::now_us() < deadline {
        core::hint::spin_loop();
    }
    // Give a CPU beyond `expected` (if fw_cfg was wrong) a moment to show.
    time::delay_us(1_000);
    ONLINE.load(Ordering::Acquire)
}

/// Called by each AP once it can run Rust code on its own.
pub fn announce_online() {
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// Lets every CPU run the kernel's main function.
pub fn release() {
    RELEASED.store(true, Ordering::Release);
}

/// Waits for [`release`].
pub fn wait_for_release() {
    while !RELEASED.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
}
