//! Hosted references: the system allocator (glibc malloc on Linux) and
//! mimalloc. They draw memory from the OS, so they take part in the timing
//! workloads only, not in the space ones.

use core::alloc::{GlobalAlloc, Layout};

use super::Contender;
use crate::region::Region;

/// `std::alloc::System`.
#[derive(Debug, Default)]
pub struct SystemAlloc;

// SAFETY: forwards to `std::alloc::System`.
unsafe impl GlobalAlloc for SystemAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { std::alloc::System.alloc(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

impl Contender for SystemAlloc {
    const NAME: &'static str = "System (glibc)";
    const KEY: &'static str = "system";
    const VERSION: &'static str = "std::alloc::System";
    const REGION: bool = false;
    unsafe fn create(_: Option<&Region>) -> Box<Self> {
        Box::new(SystemAlloc)
    }
}

/// `mimalloc::MiMalloc`.
pub struct Mimalloc(mimalloc::MiMalloc);

// SAFETY: forwards to `mimalloc::MiMalloc`.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.alloc(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

impl Contender for Mimalloc {
    const NAME: &'static str = "mimalloc";
    const KEY: &'static str = "mimalloc";
    const VERSION: &'static str = "mimalloc =0.1.52";
    const REGION: bool = false;
    unsafe fn create(_: Option<&Region>) -> Box<Self> {
        Box::new(Mimalloc(mimalloc::MiMalloc))
    }
}
