//! Memory regions for the region-based allocators: a fresh, 2 MiB-aligned
//! allocation from the host, prefaulted by writing every page, so that no
//! allocator pays (or dodges) first-touch page faults in its timings.

use std::alloc::{self as host, Layout};

/// Alignment of every region (a huge-page boundary).
pub const REGION_ALIGN: usize = 2 << 20;
const PAGE: usize = 4096;

/// A prefaulted block of host memory, returned to the host on drop.
#[derive(Debug)]
pub struct Region {
    base: *mut u8,
    len: usize,
    /// Bytes allocated from the host: `len` rounded up to 2 MiB.
    alloc_len: usize,
}

// SAFETY: a `Region` is plain memory owned by whoever holds it; the
// allocators handed its address synchronise their own use of it.
unsafe impl Send for Region {}
// SAFETY: as above; `Region` exposes no interior mutability itself.
unsafe impl Sync for Region {}

impl Region {
    /// Allocates `len` bytes (a multiple of 2 MiB) and writes every page.
    pub fn new(len: usize) -> Self {
        assert!(
            len > 0 && len.is_multiple_of(REGION_ALIGN),
            "region length {len} is not a multiple of 2 MiB"
        );
        Self::of(len)
    }

    /// A region of any non-zero length: `len` bytes at the start of a
    /// prefaulted, 2 MiB-aligned block (for heaps smaller than 2 MiB).
    pub fn of(len: usize) -> Self {
        assert!(len > 0, "empty region");
        let alloc_len = len.next_multiple_of(REGION_ALIGN);
        let layout = Layout::from_size_align(alloc_len, REGION_ALIGN).expect("region layout");
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { host::alloc(layout) };
        if base.is_null() {
            host::handle_alloc_error(layout);
        }
        let mut off = 0;
        while off < len {
            // SAFETY: `off < len`, inside the block just allocated.
            unsafe { base.add(off).write_volatile(0xa5) };
            off += PAGE;
        }
        Region {
            base,
            len,
            alloc_len,
        }
    }

    /// First byte.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a region is never empty); for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `[base, base + len)` as addresses.
    pub fn range(&self) -> (usize, usize) {
        (self.base as usize, self.base as usize + self.len)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.alloc_len, REGION_ALIGN).expect("region layout");
        // SAFETY: allocated in `of` with this layout.
        unsafe { host::dealloc(self.base, layout) }
    }
}
