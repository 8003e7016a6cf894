//! aarch64 test kernel for strata, booted by QEMU's `-M virt -kernel`.
//!
//! The kernel brings up a real multi-CPU machine the way a small OS would and
//! puts strata under it as the global allocator, then runs the shared
//! in-kernel test suite (`qemu/ktest`) on every CPU at once while a timer
//! interrupt on each CPU allocates underneath the running code.
//!
//! # Boot path
//!
//! ```text
//! QEMU -kernel kernel.elf (EL1, MMU off, device tree at 0x40000000)
//!   _start                       boot.rs   FP on, identity map + MMU on, .bss, stack, vectors
//!   kernel::boot_main            kernel.rs device tree → memory map → strata_alloc::Heap::init
//!     gic / timer                gic.rs, timer.rs   GICv2 distributor, virtual timer PPI
//!     smp::start_secondaries     smp.rs    PSCI CPU_ON (hvc/smc from /psci) for each CPU
//!       __kernel_secondary_entry boot.rs   FP, MMU, stack and TPIDR_EL1 from its BootSlot
//!       kernel::secondary_main   kernel.rs GIC CPU interface, wait for the start signal
//!   all CPUs: suite or demo with timer IRQs allocating → report → semihosting exit
//! ```
//!
//! Memory is identity-mapped (`mmu.rs`): RAM as Normal cacheable memory,
//! the low GiB of MMIO as Device memory, so strata runs with phys_offset 0.
//!
//! # Running
//!
//! `cargo run --release` boots the kernel (`-- demo` for the demo mode),
//! `cargo test --release` boots the test binary; both go through
//! `run-qemu.sh`. `run-tests.sh` runs every configuration (two memory
//! sizes, a multi-node memory map, EL2 entry with the SMC conduit).
//!
//! Exit status: 0 pass, 1 a test failed, 2 panic, 3 unexpected exception,
//! 4 the machine could not be brought up.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod boot;
pub mod console;
pub mod cpu;
pub mod dtb;
pub mod exception;
pub mod gic;
pub mod kernel;
pub mod memory;
pub mod mmu;
pub mod platform;
pub mod semihosting;
pub mod smp;
pub mod suite;
pub mod timer;

/// Exit status of a run that panicked.
pub const EXIT_PANIC: u32 = 2;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::print_emergency(format_args!(
        "\n!!! PANIC on CPU {}: {}\n",
        cpu::cpu_index(),
        info
    ));
    semihosting::exit(EXIT_PANIC)
}
