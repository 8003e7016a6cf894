//! strata's `Heap<P>` over the prepared region, with host platforms that
//! give every benchmark thread its own dense CPU id.

#[cfg(feature = "strata")]
pub use imp::*;

/// Dense CPU ids for host threads.
///
/// A thread takes the lowest free id the first time it asks, and gives it
/// back when it exits, so the threads alive at one time always hold ids
/// `0..n` and a benchmark that spawns fresh threads for every repetition
/// never runs out of ids below `max_cpus`.
pub mod host_cpu {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Bit `i` set: id `i` is held by a live thread.
    static HELD: AtomicU64 = AtomicU64::new(0);

    struct Release(Cell<usize>);

    impl Drop for Release {
        fn drop(&mut self) {
            let id = self.0.get();
            if id < 64 {
                HELD.fetch_and(!(1u64 << id), Ordering::AcqRel);
            }
        }
    }

    std::thread_local! {
        static ID: Cell<usize> = const { Cell::new(usize::MAX) };
        static RELEASE: Release = const { Release(Cell::new(usize::MAX)) };
    }

    /// The calling thread's id, as the platforms report it: `usize::MAX`
    /// (strata's shared path) until the thread calls [`id`]. This is a
    /// plain thread-local load, as a kernel's CPU id is one `gs:`- or
    /// `tpidr_el1`-relative load: every benchmark thread registers once when
    /// it starts, as a kernel sets up a CPU's per-CPU area when it comes up.
    #[inline(always)]
    pub fn current() -> usize {
        ID.with(Cell::get)
    }

    /// The calling thread's id, assigned on the first call (`usize::MAX`
    /// past 64 live threads).
    #[inline]
    pub fn id() -> usize {
        let id = ID.with(Cell::get);
        if id != usize::MAX {
            id
        } else {
            assign()
        }
    }

    #[cold]
    fn assign() -> usize {
        let mut held = HELD.load(Ordering::Acquire);
        loop {
            let id = (!held).trailing_zeros() as usize;
            if id >= 64 {
                return usize::MAX;
            }
            match HELD.compare_exchange_weak(
                held,
                held | (1 << id),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if RELEASE.try_with(|r| r.0.set(id)).is_err() {
                        // Thread exiting: do not keep an id we cannot give back.
                        HELD.fetch_and(!(1u64 << id), Ordering::AcqRel);
                        return usize::MAX;
                    }
                    ID.with(|c| c.set(id));
                    return id;
                }
                Err(now) => held = now,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn ids_are_dense_and_reused() {
            let a = super::id();
            assert_eq!(a, super::id());
            // Other tests run in parallel threads and hold ids too, so only
            // check that 200 short-lived threads do not use up the ids.
            for _ in 0..200 {
                let b = std::thread::spawn(super::id).join().unwrap();
                assert_ne!(a, b);
                assert!(b < 16, "ids are not reused: {b}");
            }
        }
    }
}

#[cfg(feature = "strata")]
mod imp {
    use core::alloc::{GlobalAlloc, Layout};

    use strata_alloc::{DebugFlags, Heap, PhysAddr, PhysRange, Platform};

    use super::host_cpu;
    use crate::contenders::Contender;
    use crate::region::Region;

    /// CPU ids given to `Heap::init`: the suite runs at most two allocating
    /// threads at once (plus spares).
    pub const MAX_CPUS: usize = 4;

    /// A host platform: one dense CPU id per thread; no interrupts.
    pub trait HostPlatform: Platform<IrqGuard = ()> + Send + Sync {
        /// Table name of strata on this platform.
        const NAME: &'static str;
        /// Command-line key.
        const KEY: &'static str;
    }

    /// Default platform settings: CPU caches claimed with an atomic swap,
    /// as on a preemptive kernel.
    #[derive(Debug)]
    pub struct HostCpus;

    impl Platform for HostCpus {
        type IrqGuard = ();
        #[inline(always)]
        fn cpu_id() -> usize {
            host_cpu::current()
        }
        #[inline(always)]
        fn disable_interrupts() {}
    }

    impl HostPlatform for HostCpus {
        const NAME: &'static str = "strata";
        const KEY: &'static str = "strata";
    }

    /// `NON_PREEMPTIVE = true`: sound here because every live thread holds
    /// its own id and no interrupt handler allocates.
    #[derive(Debug)]
    pub struct HostCpusNonPreemptive;

    impl Platform for HostCpusNonPreemptive {
        type IrqGuard = ();
        const NON_PREEMPTIVE: bool = true;
        #[inline(always)]
        fn cpu_id() -> usize {
            host_cpu::current()
        }
        #[inline(always)]
        fn disable_interrupts() {}
    }

    impl HostPlatform for HostCpusNonPreemptive {
        const NAME: &'static str = "strata (non-preemptive)";
        const KEY: &'static str = "strata-np";
    }

    /// `strata_alloc::Heap<P>` managing one region, identity-mapped (offset 0).
    pub struct StrataHeap<P: HostPlatform>(Heap<P>);

    impl<P: HostPlatform> StrataHeap<P> {
        /// The heap itself, for what `GlobalAlloc` does not reach (the page
        /// API).
        pub fn heap(&self) -> &Heap<P> {
            &self.0
        }
    }

    // SAFETY: forwards to `Heap`'s `GlobalAlloc` impl.
    unsafe impl<P: HostPlatform> GlobalAlloc for StrataHeap<P> {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded caller contract.
            unsafe { self.0.alloc(layout) }
        }
        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded caller contract.
            unsafe { self.0.dealloc(ptr, layout) }
        }
    }

    impl<P: HostPlatform> Contender for StrataHeap<P> {
        const NAME: &'static str = P::NAME;
        const KEY: &'static str = P::KEY;
        const VERSION: &'static str = "strata (path dependency, this repository)";
        const REGION: bool = true;
        unsafe fn create(r: Option<&Region>) -> Box<Self> {
            let r = r.expect("strata created without a region");
            // `STRATA_UNCHECKED=1`: a heap without checked frees (see
            // `strata_alloc::DebugFlags::CHECK_FREES`), for `callgrind.sh`.
            let heap = if std::env::var_os("STRATA_UNCHECKED").is_some_and(|v| v == "1") {
                Heap::<P>::with_debug(DebugFlags::empty())
            } else {
                Heap::<P>::new()
            };
            let h = Box::new(StrataHeap(heap));
            let (base, end) = r.range();
            let ranges = [PhysRange::new(
                PhysAddr::new(base as u64),
                PhysAddr::new(end as u64),
            )];
            // `STRATA_CPUS=n`: `max_cpus` for `init` (default MAX_CPUS), for
            // the fill table's one-CPU rows.
            let cpus = std::env::var("STRATA_CPUS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(MAX_CPUS);
            // SAFETY: the region is exclusively ours and outlives `h` (caller
            // contract); with offset 0 its virtual and "physical" addresses
            // coincide.
            unsafe { h.0.init(0, cpus, &ranges) }.expect("strata: Heap::init failed");
            h
        }
    }
}
