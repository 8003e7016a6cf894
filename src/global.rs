//! `GlobalAlloc` for [`Heap`]: what `Box`, `Vec` and `BTreeMap` call.
//!
//! * `alloc` routes by layout (see [`heap`](crate::heap)); null when out of
//!   memory.
//! * `dealloc` checks the pointer against the layout first and panics with
//!   the address and the reason if it is not a live block of that layout.
//! * `realloc` stays in place when the old and new sizes share a size
//!   class, or are both page runs and the run can shrink, or grow into free
//!   pages after it; otherwise it allocates, copies and frees. (Blocks of
//!   the early arena, and every block when canaries are on, always move.)
//! * `alloc_zeroed` zeroes the requested bytes. (Fresh pages are not known
//!   to be zero: memory from the firmware's map may hold anything.)

use crate::debug::DebugFlags;
use crate::heap::Heap;
use crate::platform::Platform;
use crate::size_class::SizeClass;
use core::alloc::{GlobalAlloc, Layout};

// SAFETY: `alloc` returns blocks of at least `layout.size()` bytes aligned to
// `layout.align()` that no other live allocation overlaps (spans hand out
// each object once until it is freed; page runs are disjoint), or null.
// `dealloc` accepts exactly what `alloc` returned, checked. `realloc`
// preserves contents up to the smaller size.
unsafe impl<P: Platform> GlobalAlloc for Heap<P> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match SizeClass::for_layout(layout.size(), layout.align()) {
            Some(class) => self.alloc_small(class, layout),
            None => self.alloc_large(layout),
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match SizeClass::for_layout(layout.size(), layout.align()) {
            Some(class) => self.free_small(ptr, class, layout),
            None => self.free_large(ptr, layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded; the caller's layout has a non-zero size.
        let ptr = unsafe { self.alloc(layout) };
        if !ptr.is_null() {
            // SAFETY: the block holds at least `layout.size()` bytes.
            unsafe { core::ptr::write_bytes(ptr, 0, layout.size()) };
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        let old = SizeClass::for_layout(layout.size(), align);
        let new = SizeClass::for_layout(new_size, align);
        let in_place = !self.is_early(ptr) && !self.debug_flags().contains(DebugFlags::CANARY);
        match (old, new) {
            _ if !in_place => {}
            (Some(a), Some(b)) if a == b => {
                self.check_small(ptr, a, layout);
                return ptr;
            }
            (None, None) if self.resize_large(ptr, layout, new_size) => return ptr,
            _ => {}
        }
        // SAFETY: the caller guarantees `new_size` rounded to `align` does
        // not overflow isize (GlobalAlloc::realloc's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
        // SAFETY: new_size is non-zero (realloc's contract).
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are live, distinct, and hold at least
            // min(old, new) bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}
