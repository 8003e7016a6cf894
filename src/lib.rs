//! # strata
//!
//! A `no_std` slab-and-span memory allocator for operating-system kernels
//! and bare-metal firmware, layered like the Go runtime, TCMalloc and Linux
//! (SLUB over the buddy allocator).
//!
//! ```text
//!             GlobalAlloc / page API                    (global.rs, heap.rs)
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
//! ## Quick start
//!
//! ```no_run
//! use strata::{Heap, PhysAddr, PhysRange, SingleCpu};
//!
//! #[global_allocator]
//! static HEAP: Heap<SingleCpu> = Heap::new();
//!
//! fn kernel_main(usable: &[(u64, u64)]) {
//!     let mut ranges = [PhysRange::new(PhysAddr::new(0), PhysAddr::new(0)); 8];
//!     for (r, &(start, end)) in ranges.iter_mut().zip(usable) {
//!         *r = PhysRange::new(PhysAddr::new(start), PhysAddr::new(end));
//!     }
//!     // SAFETY: the ranges are free RAM, identity-mapped (offset 0).
//!     unsafe { HEAP.init(0, 1, &ranges[..usable.len()]) }.expect("heap init");
//! }
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod addr;
pub mod buddy;
pub(crate) mod central;
pub mod cpu_cache;
pub mod error;
mod global;
pub mod heap;
pub mod platform;
pub mod size_class;
pub(crate) mod span;
pub mod stats;

pub use addr::{Pfn, PhysAddr, PhysOffset, PhysRange, VirtAddr, PAGE_SIZE};
pub use buddy::PageStats;
pub use central::ClassStats;
pub use cpu_cache::CpuStats;
pub use error::HeapError;
pub use heap::{Heap, PageAllocation, PageRequest};
#[cfg(feature = "std")]
pub use platform::ThreadCpus;
pub use platform::{Platform, SingleCpu};
pub use size_class::{SizeClass, MAX_SMALL};
pub use stats::HeapStats;
