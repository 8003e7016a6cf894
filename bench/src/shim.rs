//! Non-inlined call shims.
//!
//! A `#[global_allocator]` is reached through `__rust_alloc` /
//! `__rust_dealloc`, which the compiler does not inline into the caller. The
//! workloads call every allocator through these shims so that each one pays
//! the same call overhead and none gets its fast path inlined and hoisted
//! into the benchmark loop.

use core::alloc::{GlobalAlloc, Layout};

/// `a.alloc(layout)` behind a call boundary.
///
/// # Safety
/// As [`GlobalAlloc::alloc`]: `layout` has a non-zero size.
#[inline(never)]
pub unsafe fn alloc<A: GlobalAlloc + ?Sized>(a: &A, layout: Layout) -> *mut u8 {
    // SAFETY: forwarded caller contract.
    unsafe { a.alloc(layout) }
}

/// `a.dealloc(ptr, layout)` behind a call boundary.
///
/// # Safety
/// As [`GlobalAlloc::dealloc`]: `ptr` came from `a` with this `layout`.
#[inline(never)]
pub unsafe fn dealloc<A: GlobalAlloc + ?Sized>(a: &A, ptr: *mut u8, layout: Layout) {
    // SAFETY: forwarded caller contract.
    unsafe { a.dealloc(ptr, layout) }
}
