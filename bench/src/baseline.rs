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

/// The least a per-CPU-cache allocator can do per call, for comparison:
/// strata's size → class table, then a stack of free objects per class in
/// a thread-local (as a kernel's per-CPU area is one `gs:` load away).
/// Nothing else: no claim (so an interrupt handler or a second thread on
/// the same stack would corrupt it), no CPU-id bound, no check of the freed
/// pointer, no statistics. An empty stack takes a block from the system
/// allocator and a full one gives it back, both out of line.
#[cfg(feature = "strata")]
pub struct Floor;

#[cfg(feature = "strata")]
mod floor {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use strata_alloc::SizeClass;

    const DEPTH: usize = 64;
    /// More than strata's class count.
    const CLASSES: usize = 80;

    struct Stacks {
        len: [Cell<usize>; CLASSES],
        slots: [[Cell<*mut u8>; DEPTH]; CLASSES],
    }

    std::thread_local! {
        static STACKS: Stacks = const {
            Stacks {
                len: [const { Cell::new(0) }; CLASSES],
                slots: [const { [const { Cell::new(core::ptr::null_mut()) }; DEPTH] }; CLASSES],
            }
        };
    }

    fn class_layout(c: SizeClass) -> Layout {
        Layout::from_size_align(c.size(), 8).unwrap()
    }

    #[cold]
    #[inline(never)]
    fn refill(c: SizeClass) -> *mut u8 {
        // SAFETY: a class size is never zero.
        unsafe { System.alloc(class_layout(c)) }
    }

    #[cold]
    #[inline(never)]
    fn overflow(c: SizeClass, p: *mut u8) {
        // SAFETY: every block of class `c` came from `refill(c)`.
        unsafe { System.dealloc(p, class_layout(c)) }
    }

    // SAFETY: a small block is a system block of its class's size and
    // alignment 8 (callers use alignment 8), handed out at most once until
    // it is freed: each thread's stacks are its own. Large blocks are the
    // system allocator's.
    unsafe impl GlobalAlloc for super::Floor {
        #[inline(always)]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let Some(c) = SizeClass::for_layout(layout.size(), layout.align()) else {
                // SAFETY: forwarded caller contract.
                return unsafe { System.alloc(layout) };
            };
            STACKS.with(|s| {
                // SAFETY: class indices are below CLASSES and `n - 1` below
                // DEPTH.
                unsafe {
                    let len = s.len.get_unchecked(c.index());
                    let n = len.get();
                    if n == 0 {
                        return refill(c);
                    }
                    len.set(n - 1);
                    s.slots.get_unchecked(c.index()).get_unchecked(n - 1).get()
                }
            })
        }
        #[inline(always)]
        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            let Some(c) = SizeClass::for_layout(layout.size(), layout.align()) else {
                // SAFETY: forwarded caller contract.
                return unsafe { System.dealloc(p, layout) };
            };
            STACKS.with(|s| {
                // SAFETY: class indices are below CLASSES and `n` below
                // DEPTH.
                unsafe {
                    let len = s.len.get_unchecked(c.index());
                    let n = len.get();
                    if n >= DEPTH {
                        return overflow(c, p);
                    }
                    s.slots.get_unchecked(c.index()).get_unchecked(n).set(p);
                    len.set(n + 1);
                }
            })
        }
    }
}
