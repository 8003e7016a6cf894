//! Debug checks: poisoning, canaries and double-free detection.
//!
//! The always-on checks (see [`heap`](crate::heap)) catch frees of pointers
//! that are not blocks of the right layout. These catch the bugs that look
//! like valid frees, at a cost per operation proportional to the object
//! size, so they are chosen per heap with [`Heap::with_debug`]
//! (like Linux's `slab_debug=FZPU`):
//!
//! * [`DebugFlags::POISON`]: every free small object is filled with
//!   [`POISON_FREE`] (spans are poisoned when they are made), and the poison
//!   is verified when the object is handed out again: a write after free is
//!   reported with the address, class and offset. The first
//!   `LINK_BYTES` (8) bytes of an object are not checked: they hold the
//!   span's free-list link and check word once the object is back in its
//!   span, and are cleared when it leaves it (see `span`).
//! * [`DebugFlags::CANARY`]: the slack between the requested size and the
//!   block's size (up to [`CANARY_MAX`] bytes) is filled with
//!   [`CANARY_BYTE`] on allocation and checked on free: an overflow past the
//!   end of a block is reported.
//! * [`DebugFlags::DOUBLE_FREE`]: a free of a small object that is already
//!   free (in a CPU cache or in its span) is reported by the free itself.
//!   Page runs are always checked for this. Without it, a double free of a
//!   small object is still caught when the second copy returns to its span
//!   if the first is there already, but not if a CPU cache hands a copy out
//!   again first (see "Double frees" in `span`).
//!
//! Any of these sends every call to the slow path (the fast path's CPU
//! limit is 0 for such a heap); with none of them set the fast path tests
//! one flag bit on free.
//!
//! # Checked frees
//!
//! [`DebugFlags::CHECK_FREES`] is the always-on check of
//! [`heap`](crate::heap): a free of a small object is looked up in the page
//! metadata before anything is written, and a pointer that is not an object
//! of the layout's class panics with the address and the reason. It is on
//! in [`Heap::new`](crate::Heap::new). A warm 64-byte alloc+free pair
//! takes 91 instructions with it and 72 without (`bench/callgrind.sh`,
//! the harness's 19 included): the check is 24 instructions of the free
//! path (see "The fast path" in [`heap`](crate::heap)), against 4 for the
//! early-arena test that replaces it. A heap made with
//! [`Heap::with_debug`] without it trusts the caller: a free of a foreign
//! or interior pointer, or with the wrong layout, then corrupts the heap
//! silently. Page runs are always checked (the lookup is needed to free
//! them), and blocks of the early arena are still recognised.
//!
//! [`Heap::with_debug`]: crate::Heap::with_debug

use crate::addr::VirtAddr;

bitflags::bitflags! {
    /// Debug checks of a heap; see the [module docs](self).
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
    pub struct DebugFlags: u32 {
        /// Poison free objects; verify the poison when they are reused.
        const POISON = 1 << 0;
        /// Canary the slack after each block; verify it on free.
        const CANARY = 1 << 1;
        /// Detect double frees of small objects.
        const DOUBLE_FREE = 1 << 2;
        /// Check every free of a small object against the page metadata
        /// (in a region, in a span of the layout's class, at an object
        /// boundary). On in [`Heap::new`](crate::Heap::new); see "Checked
        /// frees" in the module docs before turning it off.
        const CHECK_FREES = 1 << 3;
    }
}

impl DebugFlags {
    /// The checks that look at an object's bytes on allocation.
    pub(crate) const ON_ALLOC: DebugFlags = DebugFlags::POISON.union(DebugFlags::CANARY);
    /// The checks that look at an object's bytes or state on free.
    pub(crate) const ON_FREE: DebugFlags = DebugFlags::ON_ALLOC.union(DebugFlags::DOUBLE_FREE);
}

/// The byte free objects are filled with (Linux's `POISON_FREE`).
pub const POISON_FREE: u8 = 0x6b;
/// The byte the slack after a block is filled with.
pub const CANARY_BYTE: u8 = 0xca;
/// Most slack bytes canaried per block.
pub const CANARY_MAX: usize = 256;
/// Bytes at the start of a free object that the span's free list may use:
/// one `u64` holding the link and the object's check word (see `span`).
pub(crate) const LINK_BYTES: usize = 8;

/// Fills `len` bytes at `at` with `byte`.
///
/// # Safety
/// The bytes belong to the heap (a free object, or slack of a live block).
pub(crate) unsafe fn fill(at: VirtAddr, len: usize, byte: u8) {
    // SAFETY: the caller owns these bytes.
    unsafe { core::ptr::write_bytes(at.as_mut_ptr::<u8>(), byte, len) }
}

/// The offset of the first of `len` bytes at `at` that is not `byte`.
///
/// # Safety
/// As for [`fill`].
pub(crate) unsafe fn find_not(at: VirtAddr, len: usize, byte: u8) -> Option<(usize, u8)> {
    // SAFETY: the caller owns these bytes; nothing else writes them.
    let bytes = unsafe { core::slice::from_raw_parts(at.as_mut_ptr::<u8>(), len) };
    bytes.iter().position(|&b| b != byte).map(|i| (i, bytes[i]))
}
