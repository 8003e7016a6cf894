//! The x86_64 QEMU test kernel for `strata`, as a library that each kernel
//! image (the `strata-kernel` binary and every test in `tests/`) links.
//!
//! # From power-on to the tests
//! 1. **PVH entry** (`boot`): QEMU's `-kernel` loads the ELF at 1 MiB and
//!    enters it in 32-bit protected mode through the PVH note. The boot
//!    assembly identity-maps the first 4 GiB with 2 MiB pages, enters long
//!    mode and calls the image's `kernel_bsp_entry` (defined by
//!    [`entry_point!`]), which calls [`start_bsp`].
//! 2. **Bootstrap CPU** ([`start_bsp`]): installs its per-CPU area (GS
//!    base → dense index 0), masks the legacy PICs, loads the IDT (faults print vector, error code,
//!    RIP and CR2, then exit with failure), enables the local APIC, copies
//!    the memory map and command line out of `hvm_start_info`, calibrates
//!    the TSC and the APIC timer against the PIT, maps RAM above 4 GiB,
//!    and hands every usable RAM range to `strata_alloc::Heap::init` (the
//!    kernel's `#[global_allocator]`).
//! 3. **Application processors** (`smp`): INIT-SIPI-SIPI to all others
//!    through a real-mode trampoline at 0x8000; each AP enters long mode on
//!    the same page tables, takes the next dense index and its own stack,
//!    and runs [`start_ap`]: per-CPU area, IDT, APIC. The kernel waits for
//!    as many CPUs as QEMU's `fw_cfg` reports and fails if any is missing.
//! 4. **Main**: every CPU starts its periodic APIC timer (whose handler
//!    allocates, see `background`), enables interrupts and calls the image's
//!    main function at the same time. The bootstrap CPU then waits for every
//!    CPU's result, checks the stack guards, prints the timer counts and
//!    exits QEMU through `isa-debug-exit`: status 33 for success, anything
//!    else is failure (the runner maps 33 to 0).
//!
//! # Writing a kernel image
//! ```ignore
//! #![no_std]
//! #![no_main]
//! kernel::entry_point!(main);
//! fn main(k: &kernel::Kernel) -> bool {
//!     strata_ktest::run(k.machine(), &k.ktest_config())
//! }
//! ```
//! `main` runs on every CPU at once; the run passes if it returns `true`
//! on every CPU.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod apic;
mod background;
pub mod boot;
pub mod cpu;
pub mod heap;
mod interrupts;
mod machine;
pub mod memmap;
mod paging;
pub mod percpu;
pub mod platform;
pub mod qemu;
pub mod serial;
mod smp;
pub mod time;

use core::sync::atomic::Ordering;

use spin::Once;
use strata_alloc::PhysRange;

pub use machine::KernelMachine;
pub use memmap::BootInfo;

/// Timer interrupts per second on each CPU.
const TIMER_HZ: u64 = 2_000;
/// How long the bootstrap CPU waits for the other CPUs' results after its
/// own main returned.
const RESULT_TIMEOUT_US: u64 = 30_000_000;
/// Bytes at the bottom of each stack filled with [`STACK_GUARD`] and
/// checked at the end: a stack that grew into them overflowed.
const STACK_GUARD_BYTES: usize = 512;
const STACK_GUARD: u8 = 0xCB;

static BOOT_INFO: Once<BootInfo> = Once::new();
static REGIONS: Once<memmap::Regions> = Once::new();

/// Physical limits that the page-API test allocates below: 1 MiB (AP
/// trampolines, real-mode buffers) and 4 GiB (32-bit DMA).
const PAGE_LIMITS: &[u64] = &[1 << 20, 1 << 32];

/// What an image's main function can ask of the kernel.
pub struct Kernel {
    _private: (),
}

impl Kernel {
    /// The calling CPU's dense index.
    pub fn cpu(&self) -> usize {
        percpu::index()
    }

    /// Number of CPUs running main.
    pub fn cpu_count(&self) -> usize {
        smp::ONLINE.load(Ordering::Acquire)
    }

    /// The kernel command line (`-append`, or `cargo run -- WORDS`).
    pub fn cmdline(&self) -> &'static str {
        BOOT_INFO.get().map_or("", BootInfo::cmdline)
    }

    /// The memory map as read at boot.
    pub fn boot_info(&self) -> &'static BootInfo {
        BOOT_INFO.get().expect("boot info is read before main")
    }

    /// The ranges handed to the heap.
    pub fn regions(&self) -> &'static [PhysRange] {
        REGIONS.get().map_or(&[], memmap::Regions::as_slice)
    }

    /// The kernel as the in-kernel test suite sees it.
    pub fn machine(&self) -> &'static KernelMachine {
        &machine::MACHINE
    }

    /// The test suite's parameters for this kernel.
    pub fn ktest_config(&self) -> strata_ktest::Config {
        strata_ktest::Config {
            baseline_free_pages: heap::baseline_free_pages(),
            page_limits: PAGE_LIMITS,
            phys_offset: 0,
        }
    }
}

/// Defines the image's entry points: `$main` (a `fn(&Kernel) -> bool`)
/// runs on every CPU once the kernel is up.
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        #[no_mangle]
        extern "C" fn kernel_bsp_entry(start_info: u64) -> ! {
            $crate::start_bsp(start_info, $main)
        }

        #[no_mangle]
        extern "C" fn kernel_ap_entry(index: u64) -> ! {
            $crate::start_ap(index as usize, $main)
        }
    };
}

/// Fails the boot with a message.
fn boot_failure(what: &str) -> ! {
    println!("boot: FAILED: {what}");
    qemu::exit(false)
}

/// The bootstrap CPU's path from the boot assembly to `main`.
pub fn start_bsp(start_info: u64, main: fn(&Kernel) -> bool) -> ! {
    percpu::install(0);
    interrupts::load();
    interrupts::disable_legacy_pic();
    println!("boot: strata x86_64 test kernel, PVH start info at {start_info:#x}");
    if let Err(why) = apic::enable() {
        boot_failure(why);
    }

    // SAFETY: EBX at the PVH entry held this address and nothing has
    // written memory outside the kernel image since.
    let info = match unsafe { BootInfo::read(start_info) } {
        Ok(info) => BOOT_INFO.call_once(|| info),
        Err(why) => boot_failure(why),
    };
    println!("boot: command line {:?}", info.cmdline());
    for entry in info.entries() {
        println!(
            "boot: memory map {:#014x}..{:#014x} {:>9} KiB {}",
            entry.addr,
            entry.end(),
            entry.size / 1024,
            entry.kind_name()
        );
    }

    time::calibrate();
    println!(
        "boot: TSC {} MHz, APIC timer {} ticks/ms",
        time::tsc_mhz(),
        time::apic_ticks_per_ms()
    );

    let mapped_end = paging::map_above_4g(info.ram_end());
    if info.ram_end() > mapped_end {
        println!("boot: RAM above {mapped_end:#x} is not mapped and not used");
    }
    let regions = REGIONS.call_once(|| memmap::usable_regions(info, mapped_end));
    let (kernel_start, kernel_end) = memmap::kernel_image();
    println!("boot: kernel image {kernel_start:#x}..{kernel_end:#x}");
    let mut usable = 0;
    for range in regions.as_slice() {
        let (start, end) = (range.start.as_u64(), range.end.as_u64());
        usable += end - start;
        println!(
            "boot: heap region {start:#014x}..{end:#014x} {:>9} KiB",
            (end - start) / 1024
        );
    }
    if regions.dropped > 0 {
        println!(
            "boot: {} RAM ranges left out (more than {})",
            regions.dropped,
            memmap::MAX_REGIONS
        );
    }
    println!(
        "boot: {} heap regions, {} MiB usable",
        regions.as_slice().len(),
        usable >> 20
    );

    let expected = match qemu::cpu_count() {
        Some(count) if (1..=percpu::MAX_CPUS).contains(&count) => count,
        Some(count) => boot_failure(if count == 0 {
            "fw_cfg reports no CPUs"
        } else {
            "more CPUs than the kernel supports (percpu::MAX_CPUS)"
        }),
        None => boot_failure("no QEMU fw_cfg device: cannot tell how many CPUs to start"),
    };

    // SAFETY: the regions are type-1 RAM minus the low reserved area and the
    // kernel image, all identity-mapped; nothing else in the kernel uses
    // memory outside its image and the low reserved area. Called once.
    if let Err(error) = unsafe { heap::init(regions.as_slice(), expected) } {
        println!("boot: strata_alloc::Heap::init failed: {error:?}");
        qemu::exit(false);
    }
    println!(
        "boot: heap ready: {} free pages of {} managed",
        heap::baseline_free_pages(),
        heap::HEAP.stats().managed_pages()
    );

    fill_stack_guards();
    let online = smp::start_application_processors(expected);
    for index in 0..online {
        println!(
            "boot: cpu {index} online, APIC id {}",
            percpu::get(index).apic_id.load(Ordering::Relaxed)
        );
    }
    if online != expected {
        println!("boot: FAILED: {online} of {expected} CPUs came up");
        qemu::exit(false);
    }
    println!("boot: {online} CPUs up, starting main on all of them");
    smp::release();
    run_main(main)
}

/// An application processor's path from the trampoline to `main`.
pub fn start_ap(index: usize, main: fn(&Kernel) -> bool) -> ! {
    percpu::install(index);
    interrupts::load();
    if let Err(why) = apic::enable() {
        boot_failure(why);
    }
    smp::announce_online();
    smp::wait_for_release();
    run_main(main)
}

/// Every CPU: start the timer, enable interrupts, run main, report.
fn run_main(main: fn(&Kernel) -> bool) -> ! {
    let ticks = (time::apic_ticks_per_ms() * 1000 / TIMER_HZ).clamp(1, u64::from(u32::MAX));
    apic::start_periodic_timer(ticks as u32);
    // SAFETY: the IDT is loaded with handlers for the timer, spurious and
    // exception vectors, the APIC is enabled, and no lock is held.
    unsafe { cpu::enable_interrupts() };

    let passed = main(&Kernel { _private: () });

    let me = percpu::current();
    let result = if passed {
        percpu::RESULT_PASSED
    } else {
        percpu::RESULT_FAILED
    };
    me.result.store(result, Ordering::Release);
    if percpu::index() != 0 {
        apic::stop_timer();
        cpu::halt_forever();
    }
    finish()
}

/// The bootstrap CPU, after its own main: collect every CPU's result and
/// end the run.
fn finish() -> ! {
    let cpus = smp::ONLINE.load(Ordering::Acquire);
    let deadline = time::now_us() + RESULT_TIMEOUT_US;
    let mut passed = true;
    for index in 0..cpus {
        let state = &percpu::get(index).result;
        while state.load(Ordering::Acquire) == percpu::RESULT_RUNNING && time::now_us() < deadline {
            core::hint::spin_loop();
        }
        let (ticks, allocated, oom) = {
            let cpu = percpu::get(index);
            (
                cpu.timer_ticks.load(Ordering::Relaxed),
                cpu.timer_allocations.load(Ordering::Relaxed),
                cpu.timer_out_of_memory.load(Ordering::Relaxed),
            )
        };
        let verdict = match state.load(Ordering::Acquire) {
            percpu::RESULT_PASSED => "passed",
            percpu::RESULT_FAILED => "FAILED",
            _ => "DID NOT REPORT",
        };
        passed &= verdict == "passed";
        let guard_ok = stack_guard_intact(index);
        passed &= guard_ok;
        println!(
            "kernel: cpu {index} {verdict}; timer interrupts {ticks}, allocating {allocated}, out of memory {oom}; stack guard {}",
            if guard_ok { "intact" } else { "OVERWRITTEN" }
        );
    }
    println!(
        "kernel: {} after {} ms",
        if passed { "PASS" } else { "FAIL" },
        time::now_us() / 1000
    );
    qemu::exit(passed)
}

/// The guard bytes at the bottom of CPU `index`'s stack.
fn stack_guard(index: usize) -> *mut u8 {
    // The stacks are one static array, indexed by CPU.
    let stacks = boot::CPU_STACKS.0.get().cast::<u8>();
    stacks.wrapping_add(index * boot::STACK_SIZE)
}

fn fill_stack_guards() {
    for index in 0..percpu::MAX_CPUS {
        // SAFETY: the guard bytes lie inside CPU_STACKS; only the bootstrap
        // CPU runs, on the top of its own stack, far above its guard.
        unsafe { stack_guard(index).write_bytes(STACK_GUARD, STACK_GUARD_BYTES) };
    }
}

fn stack_guard_intact(index: usize) -> bool {
    let guard = stack_guard(index);
    // SAFETY: inside CPU_STACKS; CPU `index` has finished (or, if it did not
    // report, the read is of plain bytes and only informs the report).
    (0..STACK_GUARD_BYTES).all(|offset| unsafe { guard.add(offset).read_volatile() } == STACK_GUARD)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    cpu::disable_interrupts();
    println!("PANIC on cpu {}: {info}", percpu::index());
    qemu::exit(false)
}
