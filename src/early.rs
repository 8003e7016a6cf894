//! The early heap: allocations made before [`Heap::init`].
//!
//! A kernel allocates before it knows its memory: while it parses the
//! firmware's memory map, sets up logging, or builds the region list that
//! `init` takes. [`Heap::init_early`] gives the heap a small static arena
//! for that time. Until `init`, every allocation comes from it (a
//! first-fit list allocator, `linked_list_allocator`, behind a spin lock
//! with interrupts masked); after `init`, nothing new is allocated there,
//! but blocks from it can still be freed and reallocated (moved into the
//! main heap) at any time.
//!
//! Telling an early block from a heap block costs nothing on the fast
//! path: an early block lies outside every region, so the free path's
//! check fails and the cold path that would report a foreign pointer asks
//! the early arena first.
//!
//! [`Heap::init`]: crate::Heap::init
//! [`Heap::init_early`]: crate::Heap::init_early

use crate::platform::IrqOff;
use crate::sync::IrqLock;
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The early arena of a heap.
pub(crate) struct Early {
    start: AtomicUsize,
    end: AtomicUsize,
    heap: IrqLock<linked_list_allocator::Heap>,
}

impl Early {
    pub(crate) const fn new() -> Self {
        Early {
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            heap: IrqLock::new(linked_list_allocator::Heap::empty()),
        }
    }

    /// Hands the arena over; `false` if one was given already.
    pub(crate) fn init(
        &self,
        irq: IrqOff<'_>,
        arena: &'static mut [core::mem::MaybeUninit<u8>],
    ) -> bool {
        let mut heap = self.heap.lock(irq);
        if heap.size() != 0 {
            return false;
        }
        let (start, len) = (arena.as_mut_ptr() as usize, arena.len());
        heap.init_from_slice(arena);
        self.start.store(start, Ordering::Relaxed);
        self.end.store(start + len, Ordering::Release);
        true
    }

    /// The arena's bounds, `start..end` (empty before `init`).
    pub(crate) fn bounds(&self) -> core::ops::Range<usize> {
        let end = self.end.load(Ordering::Acquire);
        self.start.load(Ordering::Relaxed)..end
    }

    /// Whether `ptr` lies in the arena.
    pub(crate) fn contains(&self, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p < self.end.load(Ordering::Acquire) && p >= self.start.load(Ordering::Relaxed)
    }

    /// A block from the arena, or null.
    pub(crate) fn alloc(&self, irq: IrqOff<'_>, layout: Layout) -> *mut u8 {
        match self.heap.lock(irq).allocate_first_fit(layout) {
            Ok(p) => p.as_ptr(),
            Err(()) => core::ptr::null_mut(),
        }
    }

    /// Frees a block of the arena.
    ///
    /// # Safety
    /// `ptr` came from [`alloc`](Self::alloc) with this layout.
    pub(crate) unsafe fn free(&self, irq: IrqOff<'_>, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract; `ptr` is non-null as it is in the arena.
        unsafe {
            self.heap
                .lock(irq)
                .deallocate(NonNull::new_unchecked(ptr), layout)
        }
    }

    /// Bytes in use in the arena.
    pub(crate) fn used(&self, irq: IrqOff<'_>) -> usize {
        self.heap.lock(irq).used()
    }
}
