//! The platform seam: what strata needs to know about the machine it runs on.
//!
//! A kernel implements [`Platform`] once, as a type with associated
//! functions (static dispatch: every call inlines to the kernel's own
//! instruction sequence, e.g. a `gs:`-relative load or `mrs tpidr_el1`).
//! Nothing below this trait knows about CPUs or interrupts; nothing in
//! strata uses `cfg(target_arch)`.
//!
//! # What a kernel must guarantee
//!
//! * [`Platform::cpu_id`] returns a small dense index (0, 1, 2, …) of the
//!   CPU the caller runs on. Ids at or above the `max_cpus` given to
//!   [`Heap::init`](crate::Heap::init) are allowed: such callers use the
//!   shared central path (correct, slower). It is never undefined behaviour.
//! * The id may go stale (the caller is preempted and migrated right after
//!   reading it) unless [`Platform::NON_PREEMPTIVE`] says otherwise. strata
//!   stays correct: a CPU's cache is claimed with an atomic compare-exchange, so two
//!   contexts can never use one cache at once; a context that finds the cache
//!   claimed takes the central path. Staleness only costs locality.
//! * [`Platform::disable_interrupts`] masks interrupts on the calling CPU
//!   until the guard drops and then restores the previous state. strata
//!   takes every spin lock under this guard, so an interrupt handler that
//!   allocates can never spin on a lock its own CPU holds. Firmware that
//!   never allocates from an interrupt handler can return `()`.

/// The machine strata runs on. See the [module docs](self).
pub trait Platform: 'static {
    /// Returned by [`disable_interrupts`](Platform::disable_interrupts);
    /// restores the previous interrupt state when dropped.
    type IrqGuard;

    /// `true` when a context inside strata can be suspended only by an
    /// interrupt handler that runs to completion on the same CPU before the
    /// context resumes: no preemption and no migration while strata code
    /// runs (a non-preemptive kernel, or one that disables preemption around
    /// allocator calls), and no two threads ever share a CPU id.
    ///
    /// Then claiming a CPU cache is a plain load and store instead of an
    /// atomic compare-exchange, which saves a locked instruction (about 20
    /// cycles on x86_64) on each fast-path operation. Nested interrupt
    /// handlers are still safe: a handler that finds the cache claimed
    /// takes the central path. Getting this wrong (claiming `true` on a
    /// preemptive kernel) lets two contexts use one cache at once: memory
    /// corruption.
    const NON_PREEMPTIVE: bool = false;

    /// Dense index of the calling CPU; see the [module docs](self).
    fn cpu_id() -> usize;

    /// Masks interrupts on the calling CPU until the guard drops.
    fn disable_interrupts() -> Self::IrqGuard;

    /// Called on the fast path right after a CPU cache has been claimed and
    /// before it is used. Does nothing by default. Tests use it to re-enter
    /// the allocator at the worst moment, as an interrupt handler would.
    #[doc(hidden)]
    #[inline(always)]
    fn cache_claimed() {}
}

/// A [`Platform`] for a single CPU that never allocates from interrupt
/// handlers: bare-metal firmware, boot loaders, early kernel code.
#[derive(Debug)]
pub struct SingleCpu;

impl Platform for SingleCpu {
    type IrqGuard = ();
    const NON_PREEMPTIVE: bool = true;
    #[inline(always)]
    fn cpu_id() -> usize {
        0
    }
    #[inline(always)]
    fn disable_interrupts() {}
}

/// Interrupts masked on the calling CPU through the platform's guard, for
/// as long as this value lives: the only source of [`IrqOff`] tokens.
pub(crate) struct IrqMasked<P: Platform>(#[allow(dead_code)] P::IrqGuard);

impl<P: Platform> IrqMasked<P> {
    /// Masks interrupts on the calling CPU until the value drops.
    #[inline(always)]
    pub(crate) fn new() -> Self {
        IrqMasked(P::disable_interrupts())
    }

    /// A token proving the mask, valid while `self` lives.
    #[inline(always)]
    pub(crate) fn token(&self) -> IrqOff<'_> {
        IrqOff(core::marker::PhantomData)
    }
}

/// A token proving that interrupts are masked on this CPU (or that the
/// platform needs no masking) for as long as it lives.
///
/// It can only be had from an [`IrqMasked`], and every spin lock in the
/// crate is an [`IrqLock`](crate::sync::IrqLock), whose `lock` takes one:
/// so no code can take a lock with interrupts enabled, and an interrupt
/// handler can never spin on a lock that the code it interrupted holds.
#[derive(Copy, Clone)]
pub(crate) struct IrqOff<'g>(core::marker::PhantomData<&'g ()>);

impl IrqOff<'static> {
    /// A token for unit tests, which run without interrupts.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        IrqOff(core::marker::PhantomData)
    }
}

#[cfg(feature = "std")]
mod host {
    extern crate std;
    use super::Platform;
    use core::sync::atomic::{AtomicUsize, Ordering};

    static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static ID: usize = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    }

    /// A [`Platform`] for host programs and tests: each thread gets its own
    /// CPU id, in the order the threads first allocate (0, 1, 2, …). Threads
    /// beyond `max_cpus` use the shared path. Interrupts do not exist.
    #[derive(Debug)]
    pub struct ThreadCpus;

    impl Platform for ThreadCpus {
        type IrqGuard = ();
        #[inline]
        fn cpu_id() -> usize {
            ID.try_with(|id| *id).unwrap_or(usize::MAX)
        }
        #[inline(always)]
        fn disable_interrupts() {}
    }
}
#[cfg(feature = "std")]
pub use host::ThreadCpus;
