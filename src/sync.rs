//! The atomics the per-CPU claim is built on: `core`'s, or `loom`'s when
//! the crate is model-checked (`--cfg loom`, see `scripts/loom.sh`).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64};

pub(crate) use core::sync::atomic::{compiler_fence, Ordering};

/// A value on cache lines of its own (two 64-byte lines, as adjacent-line
/// prefetchers pull pairs), so writers of it do not slow readers of its
/// neighbours.
#[repr(align(128))]
pub(crate) struct CacheAligned<T>(pub(crate) T);

impl<T> core::ops::Deref for CacheAligned<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
