//! A stand-in allocator that does nothing, for measuring what a benchmark
//! loop costs besides the allocator it calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::null_mut;

const LEN: usize = 1 << 16;
const ALIGN: usize = 4096;

/// Hands out the same 64 KiB buffer for every request that fits and frees
/// nothing: a correct allocator only while at most one block is live.
pub struct OneBlock(*mut u8);

// SAFETY: `OneBlock` has no state besides the buffer address.
unsafe impl Sync for OneBlock {}
// SAFETY: as above.
unsafe impl Send for OneBlock {}

impl OneBlock {
    /// Allocates the buffer.
    pub fn new() -> Self {
        let l = Layout::from_size_align(LEN, ALIGN).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { System.alloc(l) };
        assert!(!p.is_null(), "out of memory");
        OneBlock(p)
    }
}

impl Default for OneBlock {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OneBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { System.dealloc(self.0, Layout::from_size_align(LEN, ALIGN).unwrap()) }
    }
}

// SAFETY: returns an aligned buffer of 64 KiB for layouts that fit, null
// otherwise. Only valid while at most one block is live, which its users
// guarantee.
unsafe impl GlobalAlloc for OneBlock {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // `black_box` keeps the compiler from proving the calls pure and
        // deleting them.
        if l.size() <= LEN && l.align() <= ALIGN {
            black_box(self.0)
        } else {
            null_mut()
        }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _: Layout) {
        black_box(p);
    }
}
