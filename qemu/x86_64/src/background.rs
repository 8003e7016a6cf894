//! Allocation in interrupt context: the timer handler's workload.
//!
//! Every CPU's periodic APIC timer interrupt allocates a few objects of
//! different sizes through the global allocator (a small and a medium
//! vector on every tick, a 72 KiB one, which is a page run rather than a
//! size-class object, every eighth tick), writes and checks their contents
//! and frees them, all while the code it interrupted may itself be in the
//! middle of an allocation on the same CPU. strata's per-CPU cache is
//! claimed with an atomic flag, so the nested request must take the shared
//! path instead; its locks are taken with interrupts masked, so the handler
//! can never spin on a lock its own CPU holds.
//!
//! Allocation failure is expected here (one test exhausts the heap on
//! purpose): the handler uses `try_reserve`, counts the failure and moves
//! on. Corrupted contents are a bug and panic.
//!
//! [`pause`] stops the work on all CPUs and waits until no handler holds
//! memory, for the suite's final accounting.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::percpu::{self, MAX_CPUS};

/// Set while background allocation is paused.
static PAUSED: AtomicBool = AtomicBool::new(false);

/// Size of the occasional large allocation, above the largest size class.
const LARGE_BYTES: usize = 72 * 1024;

/// The timer interrupt's work on the calling CPU.
pub fn on_timer_tick() {
    let cpu = percpu::current();
    let tick = cpu.timer_ticks.fetch_add(1, Ordering::Relaxed) + 1;
    // Announce before checking PAUSED (both SeqCst): `pause` either sees
    // this flag or this handler sees PAUSED.
    cpu.in_background_work.store(true, Ordering::SeqCst);
    if !PAUSED.load(Ordering::SeqCst) {
        let counter = if allocate_and_check(tick, percpu::index()) {
            &cpu.timer_allocations
        } else {
            &cpu.timer_out_of_memory
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    cpu.in_background_work.store(false, Ordering::Release);
}

/// One round of allocations; `false` if one of them returned null.
fn allocate_and_check(tick: u64, cpu: usize) -> bool {
    let seed = tick.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ cpu as u64;
    let small_len = 2 + (tick % 14) as usize; // 16..128 bytes
    let medium_len = 300 + (tick % 3000) as usize; // 300..3300 bytes

    let mut small: Vec<u64> = Vec::new();
    if small.try_reserve_exact(small_len).is_err() {
        return false;
    }
    small.extend((0..small_len as u64).map(|i| seed ^ i));

    let mut medium: Vec<u8> = Vec::new();
    if medium.try_reserve_exact(medium_len).is_err() {
        return false;
    }
    medium.extend((0..medium_len).map(|i| (seed as usize + i) as u8));

    let mut large: Vec<u8> = Vec::new();
    if tick.is_multiple_of(8) {
        if large.try_reserve_exact(LARGE_BYTES).is_err() {
            return false;
        }
        large.resize(LARGE_BYTES, 0);
        for page in large.chunks_mut(4096) {
            page[0] = seed as u8;
        }
    }

    let small_ok = small.iter().enumerate().all(|(i, &v)| v == seed ^ i as u64);
    let medium_ok = medium
        .iter()
        .enumerate()
        .all(|(i, &v)| v == (seed as usize + i) as u8);
    let large_ok = large.chunks(4096).all(|page| page[0] == seed as u8);
    assert!(
        small_ok && medium_ok && large_ok,
        "timer interrupt on cpu {cpu}: allocation contents changed (small {small_ok}, medium {medium_ok}, large {large_ok})"
    );
    true
}

/// Stops (`true`) or restarts background allocation. After `pause(true)`
/// returns, no timer handler on any CPU holds heap memory.
pub fn pause(paused: bool) {
    PAUSED.store(paused, Ordering::SeqCst);
    if paused {
        for index in 0..MAX_CPUS {
            while percpu::get(index).in_background_work.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
        }
    }
}
