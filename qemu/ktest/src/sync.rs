//! Cross-CPU synchronisation for the suite: a reusable barrier with a
//! watchdog, and a tiny spin lock. Both are plain atomics, so they work on
//! every architecture and never allocate.

use core::cell::UnsafeCell;
use core::hint::spin_loop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::note::{note, Note};
use crate::Machine;

/// How long a CPU waits at a barrier before declaring the run broken.
/// The longest test (exhaustion of a few GiB under emulation) takes a few
/// seconds; a CPU missing for this long has hung or died.
const BARRIER_TIMEOUT_US: u64 = 60_000_000;

/// A sense-reversing barrier: the last CPU to arrive resets the count and
/// advances the generation that the others spin on.
pub struct Barrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

/// The one barrier all tests share (every CPU passes every barrier in the
/// same order, so one suffices).
pub static BARRIER: Barrier = Barrier {
    arrived: AtomicUsize::new(0),
    generation: AtomicUsize::new(0),
};

impl Barrier {
    /// Waits until `cpus` CPUs have called `wait` for this generation.
    /// Fails (with a reason) if they have not after [`BARRIER_TIMEOUT_US`].
    pub fn wait<M: Machine>(&self, m: &M, cpus: usize) -> Result<(), Note> {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == cpus {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return Ok(());
        }
        let start = m.time_us();
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) && m.time_us().saturating_sub(start) > BARRIER_TIMEOUT_US
            {
                return Err(note!(
                    "barrier timed out: {} of {cpus} CPUs arrived",
                    self.arrived.load(Ordering::Relaxed)
                ));
            }
        }
        Ok(())
    }
}

/// A minimal test-and-test-and-set spin lock. Only test code takes it, never
/// an interrupt handler, so it does not mask interrupts.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one holder at a time, so
// sharing the lock between CPUs is sound whenever `T` may move between them.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return SpinGuard { lock: self };
            }
            while self.locked.load(Ordering::Relaxed) {
                spin_loop();
            }
        }
    }
}

/// Access to a [`SpinLock`]'s value; unlocks on drop.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this CPU holds the lock, so no
        // other reference to the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only access.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
