//! The in-kernel test suite for `strata`, shared by every QEMU test kernel.
//!
//! A test kernel boots, hands the firmware's memory map to a
//! `strata_alloc::Heap` that it uses as its `#[global_allocator]`, starts every
//! CPU, and then calls [`run`] on **all CPUs at once**. The suite drives the
//! heap from every CPU concurrently and prints one line per test per CPU:
//!
//! ```text
//! ktest: cpu 2 random_churn        ok    20000 ops, 7 overlap scans (41 ms)
//! ```
//!
//! It knows nothing about the architecture: everything it needs from the
//! kernel goes through the small [`Machine`] trait (CPU count and index,
//! a serial `print`, a microsecond clock, optional timer-interrupt
//! counters and a switch for background allocation). Synchronisation between
//! CPUs (barriers, the cross-CPU free queues) is done here with atomics.
//!
//! # Using it from a kernel
//!
//! ```ignore
//! struct Board;
//! impl strata_ktest::Machine for Board {
//!     type Platform = MyPlatform;
//!     fn heap(&self) -> &'static strata_alloc::Heap<MyPlatform> { &HEAP }
//!     fn cpu_count(&self) -> usize { CPUS_ONLINE.load(Relaxed) }
//!     fn cpu_index(&self) -> usize { my_cpu_index() }
//!     fn print(&self, args: core::fmt::Arguments<'_>) { serial_println(args) }
//!     fn time_us(&self) -> u64 { counter_to_us(read_counter()) }
//! }
//!
//! // On every CPU, after all CPUs are up and the heap is initialised:
//! let config = strata_ktest::Config {
//!     baseline_free_pages, // HEAP.stats().free_pages() right after init
//!     page_limits: &[0x4800_0000],
//!     phys_offset: 0,
//! };
//! let passed = strata_ktest::run(&Board, &config);
//! // `passed` is the verdict of the whole run (all tests, all CPUs) and
//! // is the same on every CPU; CPU 0 usually turns it into the exit status.
//! ```
//!
//! # Rules for the kernel
//! - [`run`] (or [`demo`]) is called exactly once per boot, by every CPU
//!   `0..cpu_count()`, each with its own `cpu_index()`. The suite's shared
//!   state lives in statics, so a second run in the same boot is refused.
//! - [`Machine::print`] must not allocate (it runs while the heap is
//!   exhausted) and must print one call as one unbroken line group.
//! - Anything that allocates in the background (a timer interrupt, say)
//!   must tolerate a null allocation, and must stop holding memory once
//!   [`Machine::pause_background`] returns; the final accounting test
//!   depends on it.
//! - At most [`MAX_CPUS`] CPUs take part.
//!
//! # What is tested
//! In order, each behind a barrier so that every CPU runs the same test at
//! the same time (see `cases/` for each test's own notes):
//!
//! | test | what it shows |
//! | --- | --- |
//! | `page_api` | `alloc_pages` below each limit in [`Config::page_limits`], zeroed pages are zero, alignment holds, pages go back |
//! | `random_churn` | random alloc/free/realloc with random sizes and alignments; contents and non-overlap checked |
//! | `cross_cpu_free` | objects allocated on one CPU are checked and freed on another |
//! | `collections` | `Box`, `Vec`, `String`, `BTreeMap` churn through the global allocator |
//! | `large` | 64 KiB .. 4 MiB allocations, their alignment, realloc in both directions |
//! | `exhaustion` | CPU 0 allocates until null, frees everything and does it again while the others wait |
//! | `irq_alloc` | the kernel's interrupt handlers allocated on this CPU, and some arrived inside an allocation (when the kernel counts them) |
//! | `accounting` | after every CPU's `drain_cpu` and a `reclaim`, `free_pages()` equals its value after init; prints the statistics table |
//!
//! A run passes only if every test passed on every CPU and every CPU
//! reported. The last line is `ktest: N passed, M failed, K skipped`.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

mod block;
mod cases;
mod note;
mod pattern;
mod sync;

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use strata_alloc::{Heap, Platform};

use note::Note;

/// Largest number of CPUs the suite drives; more are refused.
pub const MAX_CPUS: usize = 64;

/// What the suite needs from the kernel it runs in.
///
/// Every method may be called from any CPU at any time, including while
/// the heap is exhausted.
pub trait Machine: Sync {
    /// The `strata_alloc::Platform` of the kernel's heap.
    type Platform: Platform;

    /// The heap under test, which is also the `#[global_allocator]`.
    fn heap(&self) -> &'static Heap<Self::Platform>;

    /// Number of CPUs taking part (all of them call [`run`]).
    fn cpu_count(&self) -> usize;

    /// Dense index of the calling CPU, `0..cpu_count()`; the same index
    /// the platform hands to strata.
    fn cpu_index(&self) -> usize;

    /// Prints `args` and a newline on the console. Must not allocate;
    /// concurrent calls must not interleave within one call.
    fn print(&self, args: fmt::Arguments<'_>);

    /// A monotonic clock in microseconds (any epoch), shared by all CPUs
    /// closely enough to time tests and bound waits.
    fn time_us(&self) -> u64;

    /// How many interrupts on `cpu` have allocated and freed memory so far,
    /// or `None` when the kernel does not allocate in interrupts (the
    /// `irq_alloc` test is then skipped).
    fn timer_allocations(&self, cpu: usize) -> Option<u64> {
        let _ = cpu;
        None
    }

    /// Stops (`true`) or restarts (`false`) background allocation such as
    /// the interrupt handlers' allocations. When the call with `true`
    /// returns, no background code on any CPU holds heap memory.
    fn pause_background(&self, paused: bool) {
        let _ = paused;
    }
}

/// Parameters of a run that only the kernel knows.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// `heap.stats().free_pages()` read right after `Heap::init`, before
    /// anything allocated.
    pub baseline_free_pages: u64,
    /// Physical limits for `PageRequest::below` that the heap must be able
    /// to serve (x86: 1 MiB and 4 GiB). Empty to skip that part.
    pub page_limits: &'static [u64],
    /// The heap's `virt = phys + phys_offset` offset, to check page
    /// allocations' virtual addresses.
    pub phys_offset: usize,
}

/// Outcome of one test on one CPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Verdict {
    NotRun = 0,
    Passed = 1,
    Failed = 2,
    Skipped = 3,
}

/// Per CPU and test, what happened; read by CPU 0 for the summary.
static VERDICTS: [[AtomicU8; cases::COUNT]; MAX_CPUS] =
    [const { [const { AtomicU8::new(Verdict::NotRun as u8) }; cases::COUNT] }; MAX_CPUS];

/// Set by the first CPU that enters [`run`] or [`demo`].
static STARTED: AtomicBool = AtomicBool::new(false);

/// Everything a test case gets: the machine, who it is running on and the
/// shared barrier.
pub(crate) struct Ctx<'a, M: Machine> {
    pub m: &'a M,
    pub cpu: usize,
    pub cpus: usize,
    pub config: &'a Config,
}

impl<M: Machine> Ctx<'_, M> {
    /// Waits until every CPU has reached this point.
    pub fn barrier(&self) -> Result<(), Note> {
        sync::BARRIER.wait(self.m, self.cpus)
    }

    pub fn heap(&self) -> &'static Heap<M::Platform> {
        self.m.heap()
    }
}

/// What a passing test reports (a short detail for its line) or a failing
/// test's reason.
pub(crate) enum Outcome {
    Passed(Note),
    Skipped(Note),
}

pub(crate) type TestResult = Result<Outcome, Note>;

/// Checks the machine's CPU numbers and claims the suite's statics.
fn enter<M: Machine>(m: &M) -> Option<(usize, usize)> {
    let cpus = m.cpu_count();
    let cpu = m.cpu_index();
    if cpus == 0 || cpus > MAX_CPUS || cpu >= cpus {
        m.print(format_args!(
            "ktest: cpu index {cpu} of {cpus} is out of range (at most {MAX_CPUS} CPUs)"
        ));
        return None;
    }
    if cpu == 0 && STARTED.swap(true, Ordering::AcqRel) {
        m.print(format_args!("ktest: the suite can run only once per boot"));
        return None;
    }
    Some((cpu, cpus))
}

/// Runs the whole suite. Call it on every CPU at once; see the crate docs.
///
/// Returns `true` on every CPU if and only if every test passed (or was
/// skipped) on every CPU and every CPU reported.
pub fn run<M: Machine>(m: &M, config: &Config) -> bool {
    let Some((cpu, cpus)) = enter(m) else {
        return false;
    };
    let ctx = Ctx {
        m,
        cpu,
        cpus,
        config,
    };
    if cpu == 0 {
        m.print(format_args!(
            "ktest: {} tests on {cpus} CPUs, baseline {} free pages",
            cases::COUNT,
            config.baseline_free_pages
        ));
    }
    for (index, case) in cases::all::<M>().iter().enumerate() {
        if let Err(reason) = ctx.barrier() {
            m.print(format_args!("ktest: cpu {cpu} {reason}"));
            return false;
        }
        let start = m.time_us();
        let result = (case.run)(&ctx);
        let ms = m.time_us().saturating_sub(start) / 1000;
        let verdict = match &result {
            Ok(Outcome::Passed(detail)) => {
                m.print(format_args!(
                    "ktest: cpu {cpu} {:<16} ok    {detail} ({ms} ms)",
                    case.name
                ));
                Verdict::Passed
            }
            Ok(Outcome::Skipped(detail)) => {
                m.print(format_args!(
                    "ktest: cpu {cpu} {:<16} skip  {detail}",
                    case.name
                ));
                Verdict::Skipped
            }
            Err(reason) => {
                m.print(format_args!(
                    "ktest: cpu {cpu} {:<16} FAIL  {reason} ({ms} ms)",
                    case.name
                ));
                Verdict::Failed
            }
        };
        VERDICTS[cpu][index].store(verdict as u8, Ordering::Release);
    }
    if let Err(reason) = ctx.barrier() {
        m.print(format_args!("ktest: cpu {cpu} {reason}"));
        return false;
    }
    let passed = summarise(&ctx);
    // Keep every CPU inside the suite until CPU 0 has read the verdicts.
    if ctx.barrier().is_err() {
        return false;
    }
    passed
}

/// Counts the verdicts of every CPU; CPU 0 prints the summary.
fn summarise<M: Machine>(ctx: &Ctx<'_, M>) -> bool {
    let (mut passed, mut failed, mut skipped, mut missing) = (0, 0, 0, 0);
    for verdicts in VERDICTS.iter().take(ctx.cpus) {
        for verdict in verdicts {
            match verdict.load(Ordering::Acquire) {
                v if v == Verdict::Passed as u8 => passed += 1,
                v if v == Verdict::Failed as u8 => failed += 1,
                v if v == Verdict::Skipped as u8 => skipped += 1,
                _ => missing += 1,
            }
        }
    }
    if ctx.cpu == 0 {
        let m = ctx.m;
        if missing > 0 {
            m.print(format_args!("ktest: {missing} results never reported"));
        }
        m.print(format_args!(
            "ktest: {} CPUs, {} tests each: {}",
            ctx.cpus,
            cases::COUNT,
            if failed + missing == 0 {
                "PASS"
            } else {
                "FAIL"
            },
        ));
        m.print(format_args!(
            "ktest: {passed} passed, {} failed, {skipped} skipped",
            failed + missing
        ));
    }
    failed == 0 && missing == 0
}

/// A short demonstration workload: every CPU allocates a mix of objects,
/// hands some to the other CPUs, and CPU 0 prints the statistics table
/// while they are live and again after everything is freed, drained and
/// reclaimed. Call it on every CPU at once, instead of [`run`].
///
/// Returns `true` if the workload ran and the heap's free page count came
/// back to `config.baseline_free_pages`.
pub fn demo<M: Machine>(m: &M, config: &Config) -> bool {
    let Some((cpu, cpus)) = enter(m) else {
        return false;
    };
    let ctx = Ctx {
        m,
        cpu,
        cpus,
        config,
    };
    match cases::demo::run(&ctx) {
        Ok(()) => true,
        Err(reason) => {
            m.print(format_args!("demo: cpu {cpu} FAIL {reason}"));
            false
        }
    }
}
