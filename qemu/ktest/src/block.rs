//! [`Block`]: one allocation from the global allocator, owned, with the
//! pattern operations the tests need. All raw-pointer work of the suite's
//! byte allocations is confined to this file.

use alloc::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use core::ptr::NonNull;

use crate::pattern::{self, SPARSE_STRIDE};

/// A live allocation of `layout.size()` bytes; freed on drop.
///
/// Its bytes are only ever accessed through raw pointers, so a block whose
/// contents were never written is never read through a reference.
pub struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a Block owns its allocation exclusively; the global allocator may
// free memory on any CPU, which is exactly what the cross-CPU test checks.
unsafe impl Send for Block {}

impl Block {
    /// Allocates `layout` (which must have a non-zero size); `None` when
    /// the allocator returns null.
    pub fn alloc(layout: Layout) -> Option<Block> {
        assert!(layout.size() > 0, "zero-sized test allocation");
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc(layout) })?;
        Some(Block { ptr, layout })
    }

    /// Like [`alloc`](Self::alloc), through `GlobalAlloc::alloc_zeroed`.
    pub fn alloc_zeroed(layout: Layout) -> Option<Block> {
        assert!(layout.size() > 0, "zero-sized test allocation");
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(Block { ptr, layout })
    }

    /// Allocates `size` bytes aligned to `align` (a power of two).
    pub fn new(size: usize, align: usize) -> Option<Block> {
        Block::alloc(Layout::from_size_align(size, align).ok()?)
    }

    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Resizes through `GlobalAlloc::realloc`. On failure the block is
    /// handed back unchanged.
    pub fn realloc(self, new_size: usize) -> Result<Block, Block> {
        if new_size == 0 || Layout::from_size_align(new_size, self.layout.align()).is_err() {
            return Err(self);
        }
        // SAFETY: `ptr` was allocated with `layout` by the global allocator
        // and is live; `new_size` is non-zero and, rounded to the alignment,
        // does not overflow (checked just above).
        let moved = unsafe { realloc(self.ptr.as_ptr(), self.layout, new_size) };
        match NonNull::new(moved) {
            Some(ptr) => {
                // SAFETY: checked above that this layout is valid.
                let layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, self.layout.align()) };
                core::mem::forget(self);
                Ok(Block { ptr, layout })
            }
            None => Err(self),
        }
    }

    /// Gives up ownership: the memory stays allocated until
    /// [`from_raw`](Self::from_raw) takes it back.
    pub fn into_raw(self) -> NonNull<u8> {
        let ptr = self.ptr;
        core::mem::forget(self);
        ptr
    }

    /// Takes back a block given up by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of a block with this `layout`, and has not
    /// been taken back since.
    pub unsafe fn from_raw(ptr: NonNull<u8>, layout: Layout) -> Block {
        Block { ptr, layout }
    }

    /// Writes the 8 bytes at `offset` (`offset + 8 <= len`).
    pub fn write_word(&mut self, offset: usize, value: u64) {
        assert!(offset + 8 <= self.len());
        // SAFETY: in bounds of the live allocation (checked); unaligned
        // writes are allowed for any address.
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<u64>()
                .write_unaligned(value)
        }
    }

    /// Reads the 8 bytes at `offset` (`offset + 8 <= len`); they must have
    /// been written before.
    pub fn read_word(&self, offset: usize) -> u64 {
        assert!(offset + 8 <= self.len());
        // SAFETY: in bounds of the live allocation (checked); the caller
        // wrote these bytes earlier.
        unsafe { self.ptr.as_ptr().add(offset).cast::<u64>().read_unaligned() }
    }

    /// Fills bytes `from..len` with the pattern for `seed`.
    pub fn fill_from(&mut self, from: usize, seed: u64) {
        let base = self.ptr.as_ptr();
        for offset in from..self.len() {
            let byte = pattern::word(seed, offset / 8).to_le_bytes()[offset % 8];
            // SAFETY: `offset < len`: in bounds of the live allocation.
            unsafe { base.add(offset).write(byte) }
        }
    }

    /// Fills the whole block with the pattern for `seed`.
    pub fn fill(&mut self, seed: u64) {
        self.fill_from(0, seed);
    }

    /// Offset of the first of the first `len` bytes that differs from the
    /// pattern for `seed`. Those bytes must have been written before.
    pub fn check(&self, len: usize, seed: u64) -> Option<usize> {
        self.check_from(0, len, seed)
    }

    /// Like [`check`](Self::check), over bytes `from..len` only.
    pub fn check_from(&self, from: usize, len: usize, seed: u64) -> Option<usize> {
        let base = self.ptr.as_ptr();
        (from..len.min(self.len())).find(|&offset| {
            // SAFETY: `offset < len`: in bounds of the live allocation, and
            // written earlier by the caller's fill.
            let byte = unsafe { base.add(offset).read() };
            byte != pattern::word(seed, offset / 8).to_le_bytes()[offset % 8]
        })
    }

    /// Offset of the first non-zero byte.
    pub fn check_zero(&self) -> Option<usize> {
        let base = self.ptr.as_ptr();
        // SAFETY: `offset < len`: in bounds of the live allocation, which
        // `alloc_zeroed` initialised.
        (0..self.len()).find(|&offset| unsafe { base.add(offset).read() } != 0)
    }

    /// Writes a pattern word at the start of every page-sized stride and at
    /// the end: catches overlap and lost contents of a large block without
    /// touching every byte. The block must be at least 8 bytes long.
    pub fn fill_sparse(&mut self, seed: u64) {
        for offset in sparse_offsets(self.len()) {
            self.write_word(offset, pattern::word(seed, offset / 8));
        }
    }

    /// Checks the words a [`fill_sparse`](Self::fill_sparse) of a
    /// `len`-byte block wrote, as far as they lie within this block (which
    /// may have been shrunk or grown since). Returns the first bad offset.
    pub fn check_sparse(&self, len: usize, seed: u64) -> Option<usize> {
        sparse_offsets(len)
            .filter(|&offset| offset + 8 <= self.len())
            .find(|&offset| self.read_word(offset) != pattern::word(seed, offset / 8))
    }
}

/// Offsets of the words of a sparse fill of `len` (>= 8) bytes: one per
/// stride, and the last 8 bytes, none overlapping another.
fn sparse_offsets(len: usize) -> impl Iterator<Item = usize> {
    (0..)
        .step_by(SPARSE_STRIDE)
        .take_while(move |&offset| offset + 16 <= len)
        .chain(core::iter::once(len - 8))
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated by the global allocator with `layout`
        // and is freed exactly once, here.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl Block {
    /// Fills small blocks completely and large ones sparsely.
    pub fn fill_sparse_or_full(&mut self, seed: u64) {
        if self.len() <= SPARSE_STRIDE || self.len() < 8 {
            self.fill(seed);
        } else {
            self.fill_sparse(seed);
        }
    }

    /// Checks what [`fill_sparse_or_full`](Self::fill_sparse_or_full) wrote.
    pub fn check_sparse_or_full(&self, seed: u64) -> bool {
        if self.len() <= SPARSE_STRIDE || self.len() < 8 {
            self.check(self.len(), seed).is_none()
        } else {
            self.check_sparse(self.len(), seed).is_none()
        }
    }
}
