//! The `Allocator` trait for [`Heap`]: collections placed in one heap.
//!
//! `GlobalAlloc` serves a whole program; `Allocator` serves one collection
//! at a time, so a kernel can keep, say, its page-table bookkeeping in a
//! heap of its own (`Vec::new_in(&PT_HEAP)`) and read that heap's
//! statistics separately. strata implements the trait on stable through
//! the [`allocator-api2`](https://docs.rs/allocator-api2) crate (feature
//! `allocator-api2`, on by default: its `Vec` and `Box`, and `hashbrown`'s
//! maps take it) and, with the `nightly` feature, as `core::alloc::Allocator`
//! for std's own collections. The two impls are independent, so both kinds
//! of collection work in one program. (Do not also enable
//! `allocator-api2`'s own `nightly` feature: it makes that crate's trait a
//! re-export of the core one, and the two impls would collide.)
//!
//! Both are for `Heap<P>`; the traits' blanket impls make `&Heap<P>` an
//! allocator too, which is what collections usually hold.
//!
//! # Semantics, on top of `GlobalAlloc`
//!
//! * A zero-size request is answered with a dangling pointer aligned to the
//!   layout, without touching the heap; freeing it does nothing.
//! * The block returned is exactly `layout.size()` long, so the layout the
//!   caller frees with is always the one it asked for (the per-layout
//!   checks on free stay exact).
//! * `grow` and `shrink` use `GlobalAlloc::realloc` (in place when the size
//!   class or the page run allows) when the alignment is unchanged; a change
//!   of alignment allocates, copies and frees, so that the block is always
//!   of the class its new layout maps to.
//! * Out of memory is `Err(AllocError)`, never a panic. A bad free panics,
//!   as through `GlobalAlloc` (see [`heap`](crate::heap)).
//!
//! # Time Complexity
//! As for the `GlobalAlloc` operation each method forwards to, plus the copy
//! when a block moves.
//!
//! [`Heap`]: crate::Heap

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

/// The block for a zero-size request: dangling, aligned to the layout.
#[inline]
pub(crate) fn dangling(layout: Layout) -> NonNull<[u8]> {
    let ptr = core::ptr::without_provenance_mut::<u8>(layout.align());
    // An alignment is never zero, so the fallback is never taken.
    let ptr = NonNull::new(ptr).unwrap_or(NonNull::dangling());
    NonNull::slice_from_raw_parts(ptr, 0)
}

/// `allocate` / `allocate_zeroed`.
#[inline]
pub(crate) fn allocate<A: GlobalAlloc>(
    a: &A,
    layout: Layout,
    zeroed: bool,
) -> Option<NonNull<[u8]>> {
    if layout.size() == 0 {
        return Some(dangling(layout));
    }
    let ptr = if zeroed {
        // SAFETY: the size is non-zero.
        unsafe { a.alloc_zeroed(layout) }
    } else {
        // SAFETY: the size is non-zero.
        unsafe { a.alloc(layout) }
    };
    NonNull::new(ptr).map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
}

/// `deallocate`.
///
/// # Safety
/// `ptr` is a block of this allocator allocated with `layout` (the
/// `Allocator` contract).
#[inline]
pub(crate) unsafe fn deallocate<A: GlobalAlloc>(a: &A, ptr: NonNull<u8>, layout: Layout) {
    if layout.size() != 0 {
        // SAFETY: a non-zero-size block of `a` with this layout, from the
        // caller.
        unsafe { a.dealloc(ptr.as_ptr(), layout) }
    }
}

/// Moves a live, non-empty block to a new layout: allocate, copy the
/// common prefix, free. The old block is untouched if the allocation fails.
///
/// # Safety
/// `ptr` is a live block of `a` with layout `old`; `old` and `new` have
/// non-zero sizes.
unsafe fn relocate<A: GlobalAlloc>(
    a: &A,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Option<NonNull<u8>> {
    // SAFETY: `new` has a non-zero size (caller).
    let fresh = NonNull::new(unsafe { a.alloc(new) })?;
    // SAFETY: two distinct live blocks, each at least as long as the
    // shorter layout; then the old block is freed with its own layout.
    unsafe {
        core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.as_ptr(), old.size().min(new.size()));
        a.dealloc(ptr.as_ptr(), old);
    }
    Some(fresh)
}

/// Resizes a live, non-empty block to a non-zero size.
///
/// # Safety
/// As for [`relocate`].
unsafe fn resize<A: GlobalAlloc>(
    a: &A,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Option<NonNull<u8>> {
    if old.align() == new.align() {
        // SAFETY: a live block of `a` with layout `old`; `new.size()` is
        // non-zero and, being a `Layout`'s size, does not overflow `isize`
        // when rounded up to the (common) alignment.
        NonNull::new(unsafe { a.realloc(ptr.as_ptr(), old, new.size()) })
    } else {
        // SAFETY: forwarded.
        unsafe { relocate(a, ptr, old, new) }
    }
}

/// `grow` / `grow_zeroed`.
///
/// # Safety
/// `ptr` is a block of `a` allocated with `old`, and
/// `new.size() >= old.size()` (the `Allocator` contract).
pub(crate) unsafe fn grow<A: GlobalAlloc>(
    a: &A,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zeroed: bool,
) -> Option<NonNull<[u8]>> {
    debug_assert!(new.size() >= old.size());
    if old.size() == 0 {
        // The old block is a dangling pointer: nothing to copy or free.
        return allocate(a, new, zeroed);
    }
    // SAFETY: a live non-empty block; `new.size() >= old.size() > 0`.
    let grown = unsafe { resize(a, ptr, old, new) }?;
    if zeroed {
        // SAFETY: the block holds `new.size()` bytes; the first
        // `old.size()` were copied, the rest are zeroed here.
        unsafe {
            core::ptr::write_bytes(grown.as_ptr().add(old.size()), 0, new.size() - old.size())
        };
    }
    Some(NonNull::slice_from_raw_parts(grown, new.size()))
}

/// `shrink`.
///
/// # Safety
/// `ptr` is a block of `a` allocated with `old`, and
/// `new.size() <= old.size()` (the `Allocator` contract).
pub(crate) unsafe fn shrink<A: GlobalAlloc>(
    a: &A,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Option<NonNull<[u8]>> {
    debug_assert!(new.size() <= old.size());
    if new.size() == 0 {
        // SAFETY: forwarded; a zero-size `old` is not freed.
        unsafe { deallocate(a, ptr, old) };
        return Some(dangling(new));
    }
    // SAFETY: `old.size() >= new.size() > 0`, a live block.
    let shrunk = unsafe { resize(a, ptr, old, new) }?;
    Some(NonNull::slice_from_raw_parts(shrunk, new.size()))
}

/// Implements an `Allocator` trait (`$tr`, with its error type `$err`) for
/// a `GlobalAlloc` type through the functions above.
macro_rules! impl_allocator {
    ($tr:path, $err:path, [$($gen:tt)*], $ty:ty) => {
        // SAFETY: every method forwards to the `GlobalAlloc` impl of the
        // type, whose blocks stay valid until freed through it and do not
        // overlap; zero-size blocks are dangling and never freed. The
        // contracts of `grow` and `shrink` are forwarded unchanged.
        unsafe impl<$($gen)*> $tr for $ty {
            #[inline]
            fn allocate(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $err> {
                $crate::allocator_api::allocate(self, layout, false).ok_or($err)
            }

            #[inline]
            fn allocate_zeroed(
                &self,
                layout: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $err> {
                $crate::allocator_api::allocate(self, layout, true).ok_or($err)
            }

            #[inline]
            unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, layout: core::alloc::Layout) {
                // SAFETY: forwarded from the caller.
                unsafe { $crate::allocator_api::deallocate(self, ptr, layout) }
            }

            unsafe fn grow(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $err> {
                // SAFETY: forwarded from the caller.
                unsafe { $crate::allocator_api::grow(self, ptr, old, new, false) }.ok_or($err)
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $err> {
                // SAFETY: forwarded from the caller.
                unsafe { $crate::allocator_api::grow(self, ptr, old, new, true) }.ok_or($err)
            }

            unsafe fn shrink(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, $err> {
                // SAFETY: forwarded from the caller.
                unsafe { $crate::allocator_api::shrink(self, ptr, old, new) }.ok_or($err)
            }
        }
    };
}
pub(crate) use impl_allocator;

/// Implements the enabled `Allocator` traits for a `GlobalAlloc` type.
macro_rules! impl_allocators {
    ([$($gen:tt)*], $ty:ty) => {
        #[cfg(feature = "allocator-api2")]
        $crate::allocator_api::impl_allocator!(
            allocator_api2::alloc::Allocator,
            allocator_api2::alloc::AllocError,
            [$($gen)*],
            $ty
        );
        #[cfg(feature = "nightly")]
        $crate::allocator_api::impl_allocator!(
            core::alloc::Allocator,
            core::alloc::AllocError,
            [$($gen)*],
            $ty
        );
    };
}
pub(crate) use impl_allocators;

crate::allocator_api::impl_allocators!([P: crate::Platform], crate::Heap<P>);
