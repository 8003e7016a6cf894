//! # strata
//!
//! A `no_std` slab-and-span memory allocator for operating-system kernels
//! and bare-metal firmware, layered like the Go runtime, TCMalloc and Linux
//! (SLUB over the buddy allocator).
//!
//! ```text
//!      GlobalAlloc / Allocator / page API    (global.rs, allocator_api.rs, heap.rs)
//!                        │
//!   small (≤ MAX_SMALL)  │          large (> MAX_SMALL) and pages
//!                        ▼
//!   ┌──────────────────────────────┐
//!   │ per-CPU caches (cpu_cache.rs)│  one per CPU id, no lock on the fast path
//!   └──────────────┬───────────────┘
//!                  │ batches of objects
//!   ┌──────────────▼───────────────┐
//!   │ central lists  (central.rs)  │  per size class, spin lock
//!   └──────────────┬───────────────┘
//!                  │ spans (2^k pages cut into objects of one class)
//!   ┌──────────────▼───────────────┐
//!   │ spans          (span.rs)     │  out-of-band metadata, pointer → span in O(1)
//!   └──────────────┬───────────────┘
//!                  │ page runs
//!   ┌──────────────▼───────────────┐
//!   │ buddy page heap (buddy.rs)   │  free lists per order, coalescing, regions
//!   └──────────────┬───────────────┘
//!                  │
//!       caller-supplied physical page ranges (+ phys→virt offset)
//! ```
//!
//! ## Quick start: firmware on one CPU
//!
//! ```no_run
//! use strata_alloc::{Heap, PhysAddr, PhysRange, SingleCpu};
//!
//! #[global_allocator]
//! static HEAP: Heap<SingleCpu> = Heap::new();
//!
//! fn firmware_main(usable: &[(u64, u64)]) {
//!     let mut ranges = [PhysRange::new(PhysAddr::new(0), PhysAddr::new(0)); 8];
//!     for (r, &(start, end)) in ranges.iter_mut().zip(usable) {
//!         *r = PhysRange::new(PhysAddr::new(start), PhysAddr::new(end));
//!     }
//!     // SAFETY: the ranges are free RAM, identity-mapped (offset 0).
//!     unsafe { HEAP.init(0, 1, &ranges[..usable.len()]) }.expect("heap init");
//! }
//! ```
//!
//! ## A kernel
//!
//! A kernel provides a [`Platform`] (its CPU id and its interrupt guard),
//! keeps the heap in a `static`, and hands it the usable RAM from the boot
//! loader's memory map. From then on `Box`, `Vec` and `BTreeMap` work on
//! every CPU, and page frames come from the same memory.
//!
//! ```no_run
//! extern crate alloc;
//! use alloc::{boxed::Box, collections::BTreeMap, vec::Vec};
//! use core::fmt::Write;
//! use strata_alloc::{Heap, PageRequest, PhysAddr, PhysRange, Platform};
//!
//! const MAX_CPUS: usize = 64;
//!
//! /// This kernel, as strata sees it.
//! struct Kernel;
//!
//! impl Platform for Kernel {
//!     type IrqGuard = arch::IrqGuard;
//!     /// The index the kernel keeps in its per-CPU area (GS base on
//!     /// x86_64, TPIDR_EL1 on aarch64): one load.
//!     fn cpu_id() -> usize {
//!         arch::this_cpu_index()
//!     }
//!     /// Saves the interrupt flag (pushfq / DAIF), masks interrupts; the
//!     /// guard restores the saved state when it drops.
//!     fn disable_interrupts() -> arch::IrqGuard {
//!         arch::IrqGuard::new()
//!     }
//! }
//! # mod arch {
//! #     pub struct IrqGuard;
//! #     impl IrqGuard { pub fn new() -> Self { IrqGuard } }
//! #     pub fn this_cpu_index() -> usize { 0 }
//! #     pub fn set_this_cpu_index(_: usize) {}
//! # }
//!
//! #[global_allocator]
//! static HEAP: Heap<Kernel> = Heap::new();
//!
//! /// One entry of the boot loader's memory map.
//! struct MemoryRegion { base: u64, len: u64, usable: bool }
//!
//! fn kernel_main(map: &[MemoryRegion], hhdm: usize, console: &mut impl Write) {
//!     arch::set_this_cpu_index(0);
//!     let usable = || {
//!         map.iter()
//!             .filter(|r| r.usable)
//!             .filter_map(|r| PhysRange::from_start_len(PhysAddr::new(r.base), r.len))
//!     };
//!     let largest = usable()
//!         .max_by_key(|r| r.end.as_u64() - r.start.as_u64())
//!         .expect("usable memory");
//!     // SAFETY: the loader marks as usable only free RAM, and maps all RAM
//!     // at `phys + hhdm`. The heap owns these ranges from now on.
//!     unsafe { HEAP.init(hhdm, MAX_CPUS, &[largest]) }.expect("heap init");
//!     for range in usable().filter(|r| *r != largest) {
//!         // Each other range on its own: one that is too small (a few KiB
//!         // below 1 MiB) is skipped with a reason, not fatal.
//!         // SAFETY: as above.
//!         if let Err(e) = unsafe { HEAP.add_region(range) } {
//!             let _ = writeln!(console, "{range} not used: {e}");
//!         }
//!     }
//!
//!     // The global allocator works.
//!     let mut irqs: BTreeMap<u8, Box<str>> = BTreeMap::new();
//!     irqs.insert(33, "keyboard".into());
//!     let ready: Vec<u32> = (0..1024).collect();
//!
//!     // Page frames: a zeroed page table, a real-mode trampoline for the
//!     // other CPUs below 1 MiB, a 2 MiB-aligned buffer for a 32-bit DMA
//!     // engine.
//!     let pml4 = HEAP.alloc_pages(PageRequest::new(1).zeroed()).expect("page table");
//!     let trampoline = HEAP.alloc_pages(PageRequest::new(1).below(PhysAddr::new(1 << 20)));
//!     let dma = HEAP.alloc_pages(PageRequest::new(512).align(512).below(PhysAddr::new(1 << 32)));
//!     let _ = writeln!(console, "pml4 at {} (mapped at {})", pml4.phys, pml4.virt);
//!     # let _ = (trampoline, dma, ready);
//!
//!     // On memory pressure: empty spans back to the page heap, and this
//!     // CPU's cache drained (never waits; see `Drain`).
//!     HEAP.reclaim();
//!     let _ = HEAP.drain_cpu(0);
//!     // When CPU 3 has gone offline (parked, and said so):
//!     // SAFETY: CPU 3 runs no allocator code any more.
//!     let _ = unsafe { HEAP.drain_stopped_cpu(3) };
//!     // The statistics print as a table.
//!     let _ = writeln!(console, "{}", HEAP.stats());
//! }
//! ```
//!
//! `examples/kernel.rs` is this sketch with the real instruction sequences
//! for x86_64 and aarch64 and a boot stub; it builds for
//! `x86_64-unknown-none` and `aarch64-unknown-none`. `examples/firmware.rs`
//! is the single-CPU case, `examples/host.rs` a `std` program.
//!
//! ## Other homes
//!
//! * **One collection in a heap of its own**: `&Heap<P>` is an
//!   `Allocator` (`allocator_api2::alloc::Allocator` on stable, and
//!   `core::alloc::Allocator` with the `nightly` feature), so
//!   `allocator_api2::vec::Vec::new_in(&heap)` or a `hashbrown` map keeps
//!   its memory there, and that heap's statistics show it.
//! * **An ordinary program** (feature `std`, Unix): `HostHeap` is a global
//!   allocator that maps its memory from the OS on first use and grows by
//!   mapping more, with threads spread over the CPU caches:
//!   `#[global_allocator] static A: strata_alloc::HostHeap = strata_alloc::HostHeap::new();`
//!
//! ## Guarantees
//!
//! * **Out of memory is a value, not a panic**: null from `GlobalAlloc`,
//!   `None` from [`Heap::alloc_pages`], `Err(AllocError)` from `Allocator`.
//!   Before failing, the heap gives the calling CPU's cached objects and
//!   the empty spans back to the page heap and retries. It keeps working
//!   after frees.
//! * **Bad frees panic, naming the address and the reason**, before the
//!   heap is changed: a pointer outside every region, not at the start of
//!   an object, freed with a layout of another size class, a page run
//!   freed with the wrong length or twice. (A double free of a small object
//!   that still sits in a CPU cache needs [`DebugFlags::DOUBLE_FREE`].)
//! * **Alignment**: any alignment up to 4096 is served by the size classes
//!   (every power of two up to a page is a class); larger ones by page runs,
//!   up to the alignment of the phys→virt offset (beyond it, null).
//! * **Concurrency**: [`Heap`] is `Sync` and lives in a `static`. The fast
//!   path takes no lock and masks no interrupts; every spin lock is taken
//!   under the platform's interrupt guard, so interrupt handlers may
//!   allocate when the platform masks interrupts.
//! * **Memory**: strata uses nothing but the regions it is given. Their
//!   page metadata (16 bytes a page, 0.39 %) and the per-CPU caches are
//!   carved from them; strata itself never allocates.
//!
//! ## The platform contract
//!
//! What a kernel's [`Platform`] must guarantee (a dense CPU id, which may
//! go stale; an interrupt guard that restores the previous state; when
//! [`Platform::NON_PREEMPTIVE`] may be claimed) is set out in the
//! [`platform`] module.
//!
//! ## Features
//!
//! | feature          | default | what it adds |
//! |------------------|---------|--------------|
//! | `allocator-api2` | yes     | `allocator_api2::alloc::Allocator` for `Heap` (and `HostHeap`), on stable |
//! | `nightly`        | no      | `core::alloc::Allocator` for the same types; needs a nightly compiler |
//! | `std`            | no      | host mode: `HostHeap`, `HostCpus` (Unix, via `libc`) and `ThreadCpus` |
//!
//! Without `std`, the crate is `no_std` and needs only `core`: it builds for
//! `x86_64-unknown-none` and `aarch64-unknown-none`.
//!
//! ## Minimum supported Rust version
//!
//! Rust 1.84: the strict-provenance pointer functions
//! (`core::ptr::with_exposed_provenance_mut`, `without_provenance_mut`)
//! need it; inline `const` blocks (1.79) and `core::hint::assert_unchecked`
//! (1.81) come before. Cargo refuses older compilers (`rust-version`).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(feature = "nightly", feature(allocator_api))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod addr;
#[cfg(any(feature = "allocator-api2", feature = "nightly"))]
pub mod allocator_api;
pub mod buddy;
pub(crate) mod central;
pub mod cpu_cache;
pub mod debug;
pub mod early;
pub mod error;
mod global;
pub mod heap;
#[cfg(all(feature = "std", unix))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "std", unix))))]
pub mod host;
pub mod platform;
pub mod size_class;
pub(crate) mod span;
pub mod stats;
mod sync;

pub use addr::{Pfn, PhysAddr, PhysOffset, PhysRange, VirtAddr, PAGE_SIZE};
pub use buddy::PageStats;
pub use central::ClassStats;
pub use cpu_cache::CpuStats;
pub use debug::DebugFlags;
pub use error::HeapError;
pub use heap::{Drain, GrowHandler, Heap, InitReport, PageAllocation, PageRequest, CACHE_SHARE};
#[cfg(all(feature = "std", unix))]
pub use host::{HostCpus, HostHeap};
#[cfg(feature = "std")]
pub use platform::ThreadCpus;
pub use platform::{Platform, SingleCpu};
pub use size_class::{SizeClass, MAX_SMALL};
pub use stats::HeapStats;
