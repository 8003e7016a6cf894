//! Secondary CPU bring-up through PSCI `CPU_ON`, and a reusable barrier.
//!
//! The dense CPU index is the CPU's position in the device tree's `/cpus`
//! node; its MPIDR affinity is what PSCI needs. For each secondary the boot
//! CPU fills a [`BootSlot`] (stack top, index) and calls `CPU_ON(mpidr,
//! __kernel_secondary_entry, &slot)` through the conduit the `/psci` node
//! names (`hvc` at EL1 under plain `-M virt`, `smc` with
//! `virtualization=on`). The new CPU starts with the MMU off and FP disabled;
//! `boot.rs` sets both up before reading the slot.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::boot::{self, BootSlot};
use crate::cpu;
use crate::dtb::{Conduit, MAX_CPUS};

/// Stack of each secondary CPU (the boot CPU's is in `link.ld`). The test
/// suite and the timer handler's frame both fit with a wide margin; the
/// kernel reports the deepest use at the end of a run.
pub const STACK_SIZE: usize = 256 * 1024;
/// PSCI 0.2+ `CPU_ON`, SMC64 calling convention.
const PSCI_CPU_ON: u64 = 0xc400_0003;
/// How long a started CPU gets to report in.
const BRING_UP_TIMEOUT_NS: u64 = 10_000_000_000;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// The secondary CPUs' stacks, in `.bss` (inside the kernel image, so never
/// handed to the heap). Only their addresses are used from Rust.
struct Stacks(UnsafeCell<[Stack; MAX_CPUS]>);

// SAFETY: Rust code never reads or writes the stacks through this value; it
// only computes addresses, and each stack is used by exactly one CPU.
unsafe impl Sync for Stacks {}

static STACKS: Stacks = Stacks(UnsafeCell::new(
    [const { Stack([0; STACK_SIZE]) }; MAX_CPUS],
));

static BOOT_SLOTS: [BootSlot; MAX_CPUS] = [const { BootSlot::new() }; MAX_CPUS];

/// Dense index of the boot CPU, which runs on the stack from `link.ld`.
static BOOT_INDEX: AtomicUsize = AtomicUsize::new(0);

/// CPUs that have reached Rust code (the boot CPU counts itself).
static ONLINE: AtomicUsize = AtomicUsize::new(0);

impl BootSlot {
    const fn new() -> Self {
        Self {
            stack_top: AtomicU64::new(0),
            index: AtomicU64::new(0),
        }
    }
}

/// Lowest address and size of CPU `index`'s stack.
pub fn stack_bounds(index: usize) -> (usize, usize) {
    if index == BOOT_INDEX.load(Ordering::Relaxed) {
        return boot::boot_stack();
    }
    let base = STACKS.0.get() as usize + index * STACK_SIZE;
    (base, STACK_SIZE)
}

/// Deepest use of CPU `index`'s stack in bytes: the stacks start zeroed
/// (`.bss`), so the lowest non-zero byte marks the high-water mark.
pub fn stack_high_water(index: usize) -> usize {
    let (base, size) = stack_bounds(index);
    for offset in 0..size {
        // SAFETY: the address is inside the stack array; a byte read of
        // memory that another CPU may write concurrently is only a
        // diagnostic here and is done with a volatile read.
        let b = unsafe { ((base + offset) as *const u8).read_volatile() };
        if b != 0 {
            return size - offset;
        }
    }
    0
}

/// Marks the calling CPU as online.
pub fn report_online() {
    ONLINE.fetch_add(1, Ordering::SeqCst);
    cpu::send_event();
}

/// CPUs online so far.
pub fn online() -> usize {
    ONLINE.load(Ordering::SeqCst)
}

/// A PSCI call; returns PSCI's status in x0 (0 = success).
fn psci_call(conduit: Conduit, function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: u64;
    // SAFETY: an SMCCC call into the firmware (QEMU's built-in PSCI). The
    // conduit comes from the device tree; x0–x17 may be clobbered per SMCCC,
    // which `clobber_abi("C")` declares.
    unsafe {
        match conduit {
            Conduit::Hvc => asm!(
                "hvc #0",
                inout("x0") function => ret,
                in("x1") a1, in("x2") a2, in("x3") a3,
                clobber_abi("C"),
            ),
            Conduit::Smc => asm!(
                "smc #0",
                inout("x0") function => ret,
                in("x1") a1, in("x2") a2, in("x3") a3,
                clobber_abi("C"),
            ),
        }
    }
    ret as i64
}

/// Starts every CPU in `mpidrs` except `boot_index`, then waits until each
/// reports in (or a timeout passes). Returns the number of CPUs online.
pub fn start_secondaries(conduit: Conduit, mpidrs: &[u64], boot_index: usize) -> usize {
    BOOT_INDEX.store(boot_index, Ordering::Relaxed);
    for (index, &mpidr) in mpidrs.iter().enumerate() {
        if index == boot_index {
            continue;
        }
        let (base, size) = stack_bounds(index);
        let slot = &BOOT_SLOTS[index];
        slot.stack_top
            .store((base + size) as u64, Ordering::Relaxed);
        slot.index.store(index as u64, Ordering::Relaxed);
        // Publish the slot before the CPU can read it.
        core::sync::atomic::fence(Ordering::SeqCst);
        let status = psci_call(
            conduit,
            PSCI_CPU_ON,
            mpidr,
            boot::secondary_entry(),
            slot as *const BootSlot as u64,
        );
        if status != 0 {
            crate::println!("  CPU {index} (MPIDR {mpidr:#x}): PSCI CPU_ON failed with {status}");
        }
    }
    let start = cpu::counter();
    let limit = BRING_UP_TIMEOUT_NS;
    while online() < mpidrs.len() && cpu::counter_to_ns(cpu::counter() - start) < limit {
        core::hint::spin_loop();
    }
    online()
}

/// A reusable sense-reversing barrier for a fixed number of CPUs.
pub struct Barrier {
    count: AtomicUsize,
    generation: AtomicUsize,
    parties: AtomicUsize,
}

impl Barrier {
    pub const fn new() -> Self {
        Self {
            count: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            parties: AtomicUsize::new(1),
        }
    }

    /// Sets how many CPUs take part (before anyone waits).
    pub fn set_parties(&self, n: usize) {
        self.parties.store(n.max(1), Ordering::SeqCst);
    }

    /// Blocks until every party has called `wait` for this generation.
    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        let parties = self.parties.load(Ordering::Relaxed);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == parties {
            self.count.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            while self.generation.load(Ordering::Acquire) == generation {
                core::hint::spin_loop();
            }
        }
    }
}

impl Default for Barrier {
    fn default() -> Self {
        Self::new()
    }
}
