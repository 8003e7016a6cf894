//! The kernel heap: one `strata_alloc::Heap` over every usable RAM range, used as
//! the global allocator.

use core::sync::atomic::{AtomicU64, Ordering};

use strata_alloc::{Heap, PhysRange};

use crate::platform::KernelPlatform;

/// The heap under test, and the kernel's `#[global_allocator]`.
#[global_allocator]
pub static HEAP: Heap<KernelPlatform> = Heap::new();

/// `HEAP.stats().free_pages()` right after `init`.
static BASELINE_FREE_PAGES: AtomicU64 = AtomicU64::new(0);

/// Hands `regions` to the heap (identity map: offset 0) for `max_cpus`
/// CPUs, and records the free page count.
///
/// # Safety
/// Every range is RAM that nothing else uses, now or later, and lies inside
/// the identity map; called once.
pub unsafe fn init(regions: &[PhysRange], max_cpus: usize) -> Result<(), strata_alloc::HeapError> {
    // SAFETY: per the caller, the ranges are unused, identity-mapped RAM;
    // this is the only call.
    unsafe { HEAP.init(0, max_cpus, regions)? };
    BASELINE_FREE_PAGES.store(HEAP.stats().free_pages(), Ordering::Release);
    Ok(())
}

/// The free page count recorded right after `init`.
pub fn baseline_free_pages() -> u64 {
    BASELINE_FREE_PAGES.load(Ordering::Acquire)
}
