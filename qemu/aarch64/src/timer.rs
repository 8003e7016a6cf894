//! Periodic EL1 virtual timer interrupt on every CPU, whose handler
//! allocates from the heap while the code it interrupted may itself be in
//! the middle of an allocation.
//!
//! Each tick re-arms `CNTV_TVAL_EL0` and, while [`set_allocating`] is on,
//! allocates two blocks of different size classes (cycling from 8 bytes to
//! 40 KiB, so both the per-CPU caches and the page heap are hit), fills each
//! with a pattern, checks both patterns and frees them. strata takes every
//! lock with IRQs masked and its lock-free fast path falls back to the shared
//! path when the CPU's cache is already claimed, so this must never deadlock
//! nor corrupt the interrupted allocation.
//!
//! Per CPU the kernel counts ticks, ticks whose handler allocated, handlers
//! that got no memory (expected while the suite exhausts the heap), and
//! ticks that interrupted code inside strata itself (ELR within strata's
//! functions, which `link.ld` gathers between two symbols).

use core::alloc::{GlobalAlloc, Layout};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::cpu;
use crate::dtb::MAX_CPUS;
use crate::platform::HEAP;

/// Timer interrupts per second on each CPU unless the command line says
/// otherwise (`timer-hz=N`). Under TCG the delivered rate is lower: a vCPU
/// takes a pending interrupt only when the host schedules its thread.
pub const DEFAULT_TIMER_HZ: u64 = 1000;
/// `CNTV_CTL_EL0.ENABLE` (IMASK clear).
const CTL_ENABLE: u64 = 1;

/// Sizes the handler cycles through: small classes, a page-sized class and
/// a multi-page allocation.
const SIZES: [usize; 8] = [8, 40, 96, 256, 1000, 3000, 8192, 40_000];

static IRQ: AtomicU32 = AtomicU32::new(27);
static INTERVAL: AtomicU64 = AtomicU64::new(0);
static HZ: AtomicU64 = AtomicU64::new(DEFAULT_TIMER_HZ);
static ALLOCATING: AtomicBool = AtomicBool::new(false);
/// Tick handlers currently between checking [`ALLOCATING`] and freeing.
static ACTIVE: AtomicU32 = AtomicU32::new(0);

/// Tick counters of one CPU.
pub struct TickCounts {
    pub ticks: AtomicU64,
    pub allocated: AtomicU64,
    pub out_of_memory: AtomicU64,
    pub in_allocator: AtomicU64,
}

impl TickCounts {
    const fn new() -> Self {
        Self {
            ticks: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
            out_of_memory: AtomicU64::new(0),
            in_allocator: AtomicU64::new(0),
        }
    }
}

/// A snapshot of [`TickCounts`], summable over CPUs.
#[derive(Copy, Clone, Default, Debug)]
pub struct TickTotals {
    pub ticks: u64,
    pub allocated: u64,
    pub out_of_memory: u64,
    pub in_allocator: u64,
}

impl TickTotals {
    pub fn of(c: &TickCounts) -> Self {
        Self {
            ticks: c.ticks.load(Ordering::Relaxed),
            allocated: c.allocated.load(Ordering::Relaxed),
            out_of_memory: c.out_of_memory.load(Ordering::Relaxed),
            in_allocator: c.in_allocator.load(Ordering::Relaxed),
        }
    }

    pub fn add(&mut self, o: &Self) {
        self.ticks += o.ticks;
        self.allocated += o.allocated;
        self.out_of_memory += o.out_of_memory;
        self.in_allocator += o.in_allocator;
    }
}

static COUNTS: [TickCounts; MAX_CPUS] = [const { TickCounts::new() }; MAX_CPUS];

unsafe extern "C" {
    static __strata_text_start: u8;
    static __strata_text_end: u8;
}

/// Sets the interrupt ID and the rate (boot CPU, before any CPU starts).
pub fn configure(irq: u32, hz: u64) {
    let hz = hz.max(1);
    IRQ.store(irq, Ordering::Relaxed);
    HZ.store(hz, Ordering::Relaxed);
    INTERVAL.store((cpu::counter_frequency() / hz).max(1), Ordering::Relaxed);
}

/// Configured interrupts per second on each CPU.
pub fn hz() -> u64 {
    HZ.load(Ordering::Relaxed)
}

/// Interrupt ID of the timer.
pub fn irq() -> u32 {
    IRQ.load(Ordering::Relaxed)
}

/// Turns the handlers' allocations on or off. Turning them off returns once
/// no handler on any CPU holds heap memory: a handler announces itself in
/// `ACTIVE` before it reads `ALLOCATING` (both sequentially consistent), so
/// either it sees the switch off or this wait sees it running.
pub fn set_allocating(on: bool) {
    ALLOCATING.store(on, Ordering::SeqCst);
    if !on {
        while ACTIVE.load(Ordering::SeqCst) != 0 {
            core::hint::spin_loop();
        }
    }
}

/// Counters of CPU `cpu`.
pub fn counts(cpu: usize) -> &'static TickCounts {
    &COUNTS[cpu]
}

fn arm() {
    let ticks = INTERVAL.load(Ordering::Relaxed);
    // SAFETY: writing the virtual timer's down-counter and control register
    // only schedules this CPU's next timer interrupt.
    unsafe {
        asm!(
            "msr cntv_tval_el0, {t}",
            "msr cntv_ctl_el0, {c}",
            "isb",
            t = in(reg) ticks,
            c = in(reg) CTL_ENABLE,
            options(nomem, nostack, preserves_flags),
        );
    }
}

/// Starts the periodic interrupt on the calling CPU (IRQs still masked).
pub fn start() {
    arm();
}

/// Stops the timer on the calling CPU.
pub fn stop() {
    // SAFETY: disabling the virtual timer only stops its interrupts.
    unsafe {
        asm!(
            "msr cntv_ctl_el0, xzr",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
}

fn in_allocator(elr: u64) -> bool {
    let start = core::ptr::addr_of!(__strata_text_start) as u64;
    let end = core::ptr::addr_of!(__strata_text_end) as u64;
    (start..end).contains(&elr)
}

/// Timer interrupt handler (IRQs masked, on the interrupted stack).
pub fn on_interrupt(elr: u64) {
    arm();
    let cpu = cpu::cpu_index();
    let Some(counts) = COUNTS.get(cpu) else {
        return;
    };
    let tick = counts.ticks.fetch_add(1, Ordering::Relaxed);
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    if ALLOCATING.load(Ordering::SeqCst) {
        if in_allocator(elr) {
            counts.in_allocator.fetch_add(1, Ordering::Relaxed);
        }
        let a = SIZES[tick as usize % SIZES.len()];
        let b = SIZES[(tick as usize / SIZES.len() + cpu + 3) % SIZES.len()];
        if allocate_and_check(a, b, ((cpu as u64) << 48) ^ tick) {
            counts.allocated.fetch_add(1, Ordering::Relaxed);
        } else {
            counts.out_of_memory.fetch_add(1, Ordering::Relaxed);
        }
    }
    ACTIVE.fetch_sub(1, Ordering::SeqCst);
}

/// Pattern word `i` of a block filled with `seed`.
fn pattern(seed: u64, i: usize) -> u64 {
    (seed ^ i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Fills a block word by word (the allocator aligns both layouts to at
/// least 8 bytes), then the tail bytes.
fn fill(ptr: *mut u8, len: usize, seed: u64) {
    let words = len / 8;
    for i in 0..words {
        // SAFETY: `ptr` is a live, 8-aligned allocation of `len` bytes owned
        // here and word `i` lies inside it.
        unsafe { ptr.cast::<u64>().add(i).write(pattern(seed, i)) };
    }
    for i in words * 8..len {
        // SAFETY: byte `i < len` of the same allocation.
        unsafe { ptr.add(i).write(pattern(seed, i) as u8) };
    }
}

/// Checks what [`fill`] wrote; panics (failing the run) on a mismatch.
fn check(ptr: *const u8, len: usize, seed: u64) {
    let words = len / 8;
    for i in 0..words {
        // SAFETY: as in `fill`; the word was written there.
        let got = unsafe { ptr.cast::<u64>().add(i).read() };
        assert!(
            got == pattern(seed, i),
            "timer interrupt: block {ptr:p} word {i} holds {got:#x}, wrote {:#x}",
            pattern(seed, i)
        );
    }
    for i in words * 8..len {
        // SAFETY: as in `fill`; the byte was written there.
        let got = unsafe { ptr.add(i).read() };
        assert!(
            got == pattern(seed, i) as u8,
            "timer interrupt: block {ptr:p} byte {i} holds {got:#x}"
        );
    }
}

/// Allocates blocks of `a` and `b` bytes, checks their contents survive and
/// frees them. Returns false when the heap had no memory.
fn allocate_and_check(a: usize, b: usize, seed: u64) -> bool {
    let (Ok(la), Ok(lb)) = (
        Layout::from_size_align(a, 8),
        Layout::from_size_align(b, 16),
    ) else {
        return false;
    };
    // SAFETY: non-zero-sized layouts; each block is freed below with its
    // own layout.
    let pa = unsafe { HEAP.alloc(la) };
    if pa.is_null() {
        return false;
    }
    // SAFETY: as above.
    let pb = unsafe { HEAP.alloc(lb) };
    if pb.is_null() {
        // SAFETY: `pa` came from `HEAP.alloc(la)` and is not used again.
        unsafe { HEAP.dealloc(pa, la) };
        return false;
    }
    fill(pa, a, seed);
    fill(pb, b, !seed);
    check(pa, a, seed);
    check(pb, b, !seed);
    // SAFETY: both blocks came from `HEAP.alloc` with these layouts and are
    // not used again.
    unsafe {
        HEAP.dealloc(pb, lb);
        HEAP.dealloc(pa, la);
    }
    true
}

/// Waits until the calling CPU has taken at least one more tick (IRQs must
/// be unmasked).
pub fn wait_for_tick() {
    let cpu = cpu::cpu_index();
    let start = COUNTS[cpu].ticks.load(Ordering::Relaxed);
    while COUNTS[cpu].ticks.load(Ordering::Relaxed) == start {
        cpu::wait_for_interrupt();
    }
}
