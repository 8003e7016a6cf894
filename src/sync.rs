//! The atomics the per-CPU claim is built on: `core`'s, or `loom`'s when
//! the crate is model-checked (`--cfg loom`, see `scripts/loom.sh`).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64};

pub(crate) use core::sync::atomic::{compiler_fence, Ordering};

use crate::platform::IrqOff;

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

/// A spin lock that can only be taken with interrupts masked: [`lock`]
/// needs an [`IrqOff`] token, and the guard cannot outlive it. Every lock
/// of the heap (central lists, page heap, early arena) is one, so "a lock
/// taken with interrupts enabled" does not compile.
///
/// [`lock`]: IrqLock::lock
pub(crate) struct IrqLock<T>(spin::mutex::SpinMutex<T>);

impl<T> IrqLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        IrqLock(spin::mutex::SpinMutex::new(value))
    }

    /// Takes the lock, spinning while another CPU holds it.
    #[inline(always)]
    pub(crate) fn lock<'a>(&'a self, _irq: IrqOff<'a>) -> spin::mutex::SpinMutexGuard<'a, T> {
        self.0.lock()
    }
}
