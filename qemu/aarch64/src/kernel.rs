//! The kernel proper: what the boot CPU and the secondaries do once the
//! assembly in `boot.rs` has handed over.
//!
//! Boot CPU ([`boot_main`]):
//! 1. parse the device tree (`dtb.rs`) and switch the console to its PL011;
//! 2. find its own MPIDR among the `/cpus` nodes: that position is its dense
//!    index, stored in `TPIDR_EL1`;
//! 3. compute usable RAM: every memory node, clipped to the identity map's
//!    Normal window, minus the kernel image (with all stacks), the device
//!    tree blob and every reserved range; print each step and hand the result
//!    to `strata_alloc::Heap::init` with a phys→virt offset of 0;
//! 4. enable the GIC distributor, configure the virtual timer;
//! 5. start the other CPUs with PSCI (`smp.rs`);
//! 6. run the mode chosen by `/chosen` `bootargs` (`-append`) on every CPU
//!    at once: `test` (the default) runs the shared in-kernel test suite,
//!    `demo` a short random workload; each CPU runs with its timer interrupt
//!    allocating underneath it;
//! 7. print per-CPU results, timer counts and the heap's statistics table,
//!    and exit QEMU with 0 only if every CPU succeeded and at least one timer
//!    interrupt allocated.
//!
//! Secondaries ([`secondary_main`]) enable their GIC CPU interface, report
//! in and wait for step 6.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::dtb::{self, MAX_CPUS, MachineInfo};
use crate::memory::{ListFull, MAX_RANGES, Range, RangeList};
use crate::platform::HEAP;
use crate::smp::{self, Barrier};
use crate::{boot, console, cpu, gic, mmu, println, semihosting, suite, timer};

/// Exit status when every CPU passed.
pub const EXIT_SUCCESS: u32 = 0;
/// Exit status when a test failed or no timer interrupt allocated.
pub const EXIT_FAILURE: u32 = 1;
/// Exit status when the machine could not be brought up.
pub const EXIT_BOOT_ERROR: u32 = 4;

/// What the CPUs run, from the kernel command line.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Mode {
    /// The shared test suite (default).
    Test,
    /// The suite's short demo workload.
    Demo,
    /// Self-check of the failure path: the last CPU reads an unmapped
    /// address, which must end the run with [`crate::exception::EXIT_FAULT`].
    Fault,
    /// Self-check of the failure path: the last CPU panics, which must end
    /// the run with [`crate::EXIT_PANIC`].
    Panic,
}

const MODE_NONE: u32 = 0;
const MODE_TEST: u32 = 1;
const MODE_DEMO: u32 = 2;
const MODE_FAULT: u32 = 3;
const MODE_PANIC: u32 = 4;

impl Mode {
    fn encode(self) -> u32 {
        match self {
            Mode::Test => MODE_TEST,
            Mode::Demo => MODE_DEMO,
            Mode::Fault => MODE_FAULT,
            Mode::Panic => MODE_PANIC,
        }
    }

    fn decode(v: u32) -> Option<Self> {
        match v {
            MODE_TEST => Some(Mode::Test),
            MODE_DEMO => Some(Mode::Demo),
            MODE_FAULT => Some(Mode::Fault),
            MODE_PANIC => Some(Mode::Panic),
            _ => None,
        }
    }
}

/// An address no translation covers (the identity map stops at 256 GiB).
const UNMAPPED_ADDRESS: usize = 0x40_0000_0000;

const RESULT_PENDING: u32 = 0;
const RESULT_PASS: u32 = 1;
const RESULT_FAIL: u32 = 2;

/// Set by the boot CPU to release the secondaries into the workload.
static MODE: AtomicU32 = AtomicU32::new(MODE_NONE);
/// CPUs taking part (online CPUs).
static CPUS: AtomicUsize = AtomicUsize::new(1);
static RESULTS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(RESULT_PENDING) }; MAX_CPUS];
static ELAPSED_NS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// `free_pages` right after `Heap::init`, for the suite's final accounting.
static BASELINE_FREE_PAGES: AtomicU64 = AtomicU64::new(0);
/// Synchronises the CPUs around the workload.
pub static BARRIER: Barrier = Barrier::new();

/// Number of CPUs running the workload.
pub fn cpu_count() -> usize {
    CPUS.load(Ordering::Relaxed)
}

fn boot_error(msg: core::fmt::Arguments<'_>) -> ! {
    println!("boot error: {msg}");
    semihosting::exit(EXIT_BOOT_ERROR)
}

/// What the kernel command line (`/chosen` `bootargs`, QEMU's `-append`)
/// selects: a mode word (`test`, `demo`, `fault`, `panic`) and
/// `timer-hz=N`.
struct Options {
    mode: Mode,
    timer_hz: u64,
}

fn parse_bootargs(bootargs: &str) -> Options {
    let mut options = Options {
        mode: Mode::Test,
        timer_hz: timer::DEFAULT_TIMER_HZ,
    };
    for word in bootargs.split_ascii_whitespace() {
        match word {
            "demo" => options.mode = Mode::Demo,
            "test" => options.mode = Mode::Test,
            "fault" => options.mode = Mode::Fault,
            "panic" => options.mode = Mode::Panic,
            _ => {
                if let Some(hz) = word.strip_prefix("timer-hz=").and_then(|v| v.parse().ok()) {
                    options.timer_hz = hz;
                } else {
                    println!("bootargs: ignoring {word:?}");
                }
            }
        }
    }
    options
}

/// Rust entry of the boot CPU (from `_start`, MMU and FP on, IRQs masked).
pub extern "C" fn boot_main(x0: u64, entry_el: u64) -> ! {
    let boot_start = cpu::counter();
    println!();
    println!("strata aarch64 test kernel (entered at EL{entry_el}, running at EL1)");

    // SAFETY: x0 is the entry value of x0; RAM is identity-mapped and the
    // blob's range is kept out of the heap below.
    let info = match unsafe { dtb::parse(x0) } {
        Ok(info) => info,
        Err(e) => boot_error(format_args!("no usable device tree: {e:?}")),
    };
    if let Some(base) = info.uart {
        console::set_base(base);
    }

    let mpidr = cpu::mpidr();
    let cpus = &info.cpus[..info.cpu_count];
    let Some(boot_index) = cpus.iter().position(|&m| m == mpidr) else {
        boot_error(format_args!("boot CPU MPIDR {mpidr:#x} is not in /cpus"))
    };
    cpu::set_cpu_index(boot_index);

    print_machine(&info, boot_index);
    let regions = usable_memory(&info);
    init_heap(&regions, cpus.len());

    let gic = match info.gic {
        Ok(gic) => gic,
        Err(other) => boot_error(format_args!(
            "interrupt controller {other:?} is not a GICv2 (run -M virt with its default gic-version=2)"
        )),
    };
    gic::init_distributor(gic);
    let options = parse_bootargs(info.bootargs);
    timer::configure(info.vtimer_irq, options.timer_hz);
    gic::init_cpu(timer::irq());

    smp::report_online();
    let online = match info.psci {
        Some(conduit) if cpus.len() > 1 => smp::start_secondaries(conduit, cpus, boot_index),
        _ => 1,
    };
    println!("smp: {online} of {} CPUs online", cpus.len());
    if online != cpus.len() {
        boot_error(format_args!("only {online} of {} CPUs came up", cpus.len()));
    }
    let boot_ns = cpu::counter_to_ns(cpu::counter() - boot_start);
    println!("boot took {} us", boot_ns / 1000);

    let mode = options.mode;
    CPUS.store(online, Ordering::SeqCst);
    BARRIER.set_parties(online);
    println!(
        "mode: {mode:?} on {online} CPUs, timer {} Hz on IRQ {}",
        timer::hz(),
        timer::irq()
    );
    println!();
    MODE.store(mode.encode(), Ordering::SeqCst);
    cpu::send_event();

    run_on_this_cpu(mode);
    let code = report(mode, online);
    semihosting::exit(code)
}

/// Rust entry of a secondary CPU (from `__kernel_secondary_entry`).
pub extern "C" fn secondary_main(index: u64) -> ! {
    debug_assert_eq!(index as usize, cpu::cpu_index());
    gic::init_cpu(timer::irq());
    smp::report_online();
    let mode = loop {
        match Mode::decode(MODE.load(Ordering::SeqCst)) {
            Some(mode) => break mode,
            None => cpu::wait_for_event(),
        }
    };
    run_on_this_cpu(mode);
    loop {
        cpu::wait_for_event();
    }
}

/// The workload part every CPU runs, timer interrupts on.
fn run_on_this_cpu(mode: Mode) {
    let index = cpu::cpu_index();
    timer::start();
    // SAFETY: the vectors are installed, the GIC CPU interface is enabled and
    // the only interrupt enabled is the timer, whose handler is ready.
    unsafe { cpu::enable_irqs() };
    assert!(
        cpu::irq_guard_works(),
        "IrqGuard does not mask and restore DAIF.I"
    );
    BARRIER.wait();
    if index == 0 {
        timer::set_allocating(true);
    }
    BARRIER.wait();

    let start = cpu::counter();
    let baseline = BASELINE_FREE_PAGES.load(Ordering::Relaxed);
    let last = index + 1 == cpu_count();
    let ok = match mode {
        Mode::Test => suite::run(baseline),
        Mode::Demo => suite::demo(baseline),
        Mode::Fault if last => {
            // SAFETY: deliberately unsound read of an unmapped address: the
            // resulting translation fault must be reported by the vectors and
            // end the run; execution never continues past it.
            let v = unsafe { (UNMAPPED_ADDRESS as *const u64).read_volatile() };
            println!("fault mode: read {v:#x} from an unmapped address without a fault");
            false
        }
        Mode::Panic if last => panic!("panic requested by the kernel command line"),
        Mode::Fault | Mode::Panic => {
            // Give the last CPU time to fail; reaching the end is an error.
            let start = cpu::counter();
            while cpu::counter_to_ns(cpu::counter() - start) < 2_000_000_000 {
                core::hint::spin_loop();
            }
            false
        }
    };
    ELAPSED_NS[index].store(
        cpu::counter_to_ns(cpu::counter() - start),
        Ordering::Relaxed,
    );

    // Every CPU takes at least one more tick so a run whose workload is
    // shorter than a timer period still exercises the handler.
    timer::wait_for_tick();
    BARRIER.wait();
    if index == 0 {
        timer::set_allocating(false);
    }
    BARRIER.wait();
    cpu::disable_irqs();
    timer::stop();
    RESULTS[index].store(if ok { RESULT_PASS } else { RESULT_FAIL }, Ordering::SeqCst);
    BARRIER.wait();
}

fn print_machine(info: &MachineInfo, boot_index: usize) {
    println!(
        "device tree at {:#x}, {} bytes",
        info.blob.start,
        info.blob.len()
    );
    println!(
        "cpus: {} in /cpus (using {}), boot CPU index {boot_index} (MPIDR {:#x})",
        info.cpus_in_tree, info.cpu_count, info.cpus[boot_index]
    );
    match info.psci {
        Some(c) => println!("psci: conduit {c:?}"),
        None => println!("psci: none (only the boot CPU will run)"),
    }
    if let Ok(gic) = info.gic {
        println!(
            "gic: GICv2, distributor {:#x}, cpu interface {:#x}",
            gic.distributor, gic.cpu_interface
        );
    }
    if !info.bootargs.is_empty() {
        println!("bootargs: {:?}", info.bootargs);
    }
}

fn ranges_fit(result: Result<(), ListFull>) {
    if result.is_err() {
        boot_error(format_args!("more than {} memory ranges", MAX_RANGES));
    }
}

/// RAM from the device tree minus everything in use, within the identity
/// map's Normal window.
fn usable_memory(info: &MachineInfo) -> RangeList {
    println!("memory nodes:");
    for r in info.memory.as_slice() {
        println!("  {r}");
    }
    let (kstart, kend) = boot::kernel_image();
    let kernel = Range {
        start: kstart,
        end: kend,
    };
    let mut usable = info.memory;
    ranges_fit(usable.clip(Range {
        start: dtb::VIRT_RAM_BASE,
        end: mmu::NORMAL_WINDOW_END,
    }));
    println!("excluded:");
    println!("  {kernel} kernel image, stacks, page table");
    ranges_fit(usable.remove(kernel));
    println!("  {} device tree blob", info.blob);
    ranges_fit(usable.remove(info.blob));
    for res in info.reserved.as_slice() {
        println!("  {res} reserved by the device tree");
        ranges_fit(usable.remove(*res));
    }
    println!(
        "usable ({} ranges, {} KiB):",
        usable.len(),
        usable.total() / 1024
    );
    for r in usable.as_slice() {
        println!("  {r}");
    }
    usable
}

fn init_heap(usable: &RangeList, max_cpus: usize) {
    let mut regions = [strata_alloc::PhysRange::new(
        strata_alloc::PhysAddr::new(0),
        strata_alloc::PhysAddr::new(0),
    ); MAX_RANGES];
    for (slot, r) in regions.iter_mut().zip(usable.as_slice()) {
        *slot = strata_alloc::PhysRange::new(
            strata_alloc::PhysAddr::new(r.start),
            strata_alloc::PhysAddr::new(r.end),
        );
    }
    let regions = &regions[..usable.len()];
    // SAFETY: the ranges are RAM that nothing else uses (kernel image,
    // stacks, device tree and reserved ranges removed above), identity-mapped
    // as Normal memory, so phys_offset 0 is right; init runs once, before any
    // other CPU is started.
    if let Err(e) = unsafe { HEAP.init(0, max_cpus, regions) } {
        boot_error(format_args!("strata_alloc::Heap::init failed: {e:?}"));
    }
    let stats = HEAP.stats();
    BASELINE_FREE_PAGES.store(stats.free_pages(), Ordering::Relaxed);
    println!(
        "heap: {} pages managed, {} free after init",
        stats.managed_pages(),
        stats.free_pages()
    );
}

/// Prints the outcome and returns the exit status.
fn report(mode: Mode, cpus: usize) -> u32 {
    println!();
    println!("per-CPU results:");
    let mut passed = 0;
    let mut total = timer::TickTotals::default();
    for cpu in 0..cpus {
        let ok = RESULTS[cpu].load(Ordering::SeqCst) == RESULT_PASS;
        passed += usize::from(ok);
        let c = timer::counts(cpu);
        let t = timer::TickTotals::of(c);
        total.add(&t);
        println!(
            "  CPU {cpu}: {}  {} ms, timer ticks {}, allocated in IRQ {}, IRQ OOM {}, interrupted strata {}, stack {} KiB",
            if ok { "PASS" } else { "FAIL" },
            ELAPSED_NS[cpu].load(Ordering::Relaxed) / 1_000_000,
            t.ticks,
            t.allocated,
            t.out_of_memory,
            t.in_allocator,
            smp::stack_high_water(cpu) / 1024,
        );
    }
    println!();
    let unexpected = gic::unexpected_interrupts();
    println!(
        "timer: {} ticks, {} handlers allocated, {} found no memory, {} interrupted strata code; {} unexpected IRQs",
        total.ticks, total.allocated, total.out_of_memory, total.in_allocator, unexpected
    );
    let ok = passed == cpus && total.allocated > 0;
    println!(
        "RESULT: {} mode={mode:?} cpus={cpus} passed={passed} irq_allocs={}",
        if ok { "PASS" } else { "FAIL" },
        total.allocated
    );
    if total.allocated == 0 {
        println!("FAIL: no timer interrupt allocated");
    }
    if ok { EXIT_SUCCESS } else { EXIT_FAILURE }
}
