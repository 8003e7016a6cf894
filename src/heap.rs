//! The façade: [`Heap`], which routes every request to its layer.
//!
//! # Routing
//!
//! ```text
//!  alloc(layout) ── class_for(layout) ─┬─ Some(class) ─► CPU cache ─► central list ─► spans ─► page heap
//!                                      └─ None ────────► page heap (a run of ⌈size / 4096⌉ pages)
//! ```
//!
//! A request is small when its size (rounded up to its alignment) is at
//! most [`MAX_SMALL`](crate::size_class::MAX_SMALL) and its alignment at
//! most 4096; everything else is a page run, page-exact: a 4096-byte,
//! 4096-aligned block costs one page, a run of `n` pages costs `n` pages.
//! A page-run alignment above the alignment of the phys→virt offset cannot
//! be honoured in virtual addresses and fails (null).
//!
//! Small requests go through one function each way, `Heap::alloc_small`
//! and `Heap::free_small`: the per-CPU cache when the caller's CPU id is
//! below `max_cpus` and its cache is free to claim, else the central path
//! (`Heap::alloc_central`, `Heap::free_central`), which takes the
//! class's lock.
//!
//! # Out of memory
//!
//! When the page heap cannot serve a request, the heap drains every CPU
//! cache it may claim from the calling context (its own CPU's, unless the
//! context it interrupted holds it; on a preemptive platform every other
//! CPU's that is not in use), asks the owners of the others to drain on
//! their next refill or flush, gives the empty spans kept by the central
//! lists back to the page heap, and tries again; if that fails it asks the
//! grow handler, if one is set, and tries once more; then it returns null.
//! It never panics on out-of-memory, and it keeps working after frees.
//! Requests that nothing could serve skip those steps: a run longer than a
//! region can be fails at once; a run longer than the heap skips the
//! draining; a page request with a physical limit does not ask the grow
//! handler, whose new memory may lie anywhere.
//!
//! # Locks, claims and contexts
//!
//! Every lock (central lists, page heap, early arena) is an
//! `IrqLock`, which can only be taken with an
//! `IrqOff` token, which only an `IrqMasked` (the platform's interrupt
//! guard) hands out: no lock is ever taken with interrupts enabled. A CPU
//! cache is used only through a `Claimed` guard, released when it drops,
//! also when a panic unwinds. No path waits for a claim: a context that
//! cannot claim a cache takes the central path, and [`Heap::drain_cpu`]
//! asks instead (see [`Drain`]).
//!
//! # Checks on free
//!
//! Every free is checked before anything is written: the pointer must lie
//! in a region, at an object boundary of a span of the layout's class, or
//! at the first page of a run of the layout's length. Anything else panics
//! with the address and the reason, before the heap is touched. The check
//! of small objects is [`DebugFlags::CHECK_FREES`], on in [`Heap::new`];
//! its cost, and what turning it off gives up, are in the `debug` module.
//!
//! Double frees, with the default flags:
//! * a page run or page freed twice, through any pair of `dealloc`,
//!   `realloc` and `free_pages`, from one CPU or two at once, panics: a
//!   run's first page changes state (live run, page on a CPU's page list,
//!   free) only by compare-exchange or under the page heap's lock, and
//!   every such change checks the state it leaves;
//! * a small object freed again after it went back to its span panics when
//!   the second copy reaches the span (see "Double frees" in `span`), and
//!   so does one freed twice into CPU caches, when both copies reach the
//!   span (a flush or drain);
//! * a small object freed twice into a CPU cache and handed out again
//!   before the copies reach the span is not caught: two callers then
//!   hold one object. [`DebugFlags::DOUBLE_FREE`] catches it at the second
//!   free, at the cost of a search of the caches on every free.
//!
//! # The fast path
//!
//! What `alloc_small` and `free_small` inline into the caller, counted in
//! x86_64 instructions of a host build (`bench/callgrind.sh` counts them
//! through non-inlined shims; a kernel's CPU id is one `gs:` load where the
//! host needs two for a thread-local, and its tables need no GOT load):
//!
//! | step | alloc | free |
//! |---|---:|---:|
//! | size → class (`size <= MAX_SMALL`, one table load) | 7 | 7 |
//! | CPU id, `id < fast_cpus`, cache address | 8 | 8 |
//! | claim (compare-exchange) and release | 5 | 5 |
//! | pop or push on the class's pointer stack (alloc: and the hit count) | 7 | 6 |
//! | check: flag, first region, tag XOR and object boundary | – | 2 + 9 + 13 |
//! | return | 1 | 1 |
//! | **total** | **28** | **51** |
//!
//! Without checked frees the check becomes the early arena's range test
//! (4). Everything else is a call in tail position, so the fast path sets
//! up no stack frame. Per alloc+free pair through the benchmark's shims
//! that is 91 instructions (72 unchecked) against mimalloc's 77; the
//! harness alone takes 19. What stays: one CPU id lookup and one claim per
//! call, which buy re-entrancy without masking interrupts (see
//! `cpu_cache`), and the check, which buys a panic instead of corruption
//! on a bad free. Going much lower would take per-CPU memory the platform
//! addresses directly (a `gs:` slot per heap) and interrupt-atomic pops
//! without a claim (Linux's `this_cpu_cmpxchg`), which need architecture
//! code that this crate keeps out of its core. For scale: the benchmark's
//! `baseline::Floor`, a bare per-thread stack per class with the same
//! class table and none of the claim, CPU-id bound, check or statistics,
//! takes 48 through the same shims, so a 50-instruction pair leaves 2 for
//! all of those.

use crate::addr::{Pfn, PhysAddr, PhysOffset, PhysRange, VirtAddr, PAGE_SIZE};
use crate::buddy::{kind, PageHeap, Run, MAX_ORDER, MAX_REGIONS};
use crate::central::CentralList;
use crate::cpu_cache::{Claimed, CpuCache, CPU_BYTES};
use crate::debug::{self, DebugFlags};
use crate::early::Early;
use crate::error::HeapError;
use crate::platform::{IrqMasked, IrqOff, Platform};
use crate::size_class::{SizeClass, NUM_CLASSES};
use crate::span::{self, BadFree, Span};
use crate::stats::{HeapStats, STATS_CPUS};
use core::alloc::Layout;
use core::marker::PhantomData;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

/// Bytes between two CPUs' caches (cache-line aligned).
const CACHE_STRIDE: usize = CPU_BYTES.next_multiple_of(64);

/// The per-CPU caches are set up only if their storage takes at most
/// `1 / CACHE_SHARE` of the managed pages. In a smaller heap, memory
/// reserved for caches would be memory the heap cannot hand out (with one
/// CPU the caches' storage is 16 pages), so such a heap serves every CPU
/// from the central lists: correct, and on one CPU nearly as fast, since
/// no other CPU contends for their locks. One eighth keeps at least 7/8 of
/// every heap for allocations; the storage of one CPU then needs a heap of
/// 512 KiB.
pub const CACHE_SHARE: u64 = 8;

/// What [`Heap::init`] set up.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct InitReport {
    /// Pages free for allocation: the managed pages less the caches'
    /// storage.
    pub free_pages: u64,
    /// CPU ids that got a cache: the `max_cpus` given to `init`, or 0 when
    /// the caches' storage would have taken more than `1 / CACHE_SHARE` of
    /// the heap ([`CACHE_SHARE`]). With 0, every CPU allocates from the
    /// central lists.
    pub cached_cpus: usize,
}

/// What [`Heap::drain_cpu`] did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Drain {
    /// The cache's objects and pages went back to the central lists and
    /// the page heap.
    Drained,
    /// The cache could not be claimed from here: it is in use (by the
    /// context this call interrupted, or by a task running on that CPU), or
    /// it belongs to another CPU of a
    /// [`NON_PREEMPTIVE`](Platform::NON_PREEMPTIVE) platform, whose claims
    /// only its own CPU may take. The cache is marked, and its owner drains
    /// it on its next refill or flush.
    Requested,
    /// No cache has this CPU id.
    NoCache,
}

impl Drain {
    /// Whether the cache was drained by this call.
    pub fn is_drained(self) -> bool {
        self == Drain::Drained
    }
}

/// Clears the heap's "grow handler running" flag when dropped, also when
/// the handler panics.
struct Growing<'a>(&'a AtomicBool);

impl Drop for Growing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A request for physical pages; see [`Heap::alloc_pages`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    count: usize,
    align: usize,
    zeroed: bool,
    below: Option<PhysAddr>,
}

impl PageRequest {
    /// `count` pages, page-aligned, not zeroed, anywhere.
    pub const fn new(count: usize) -> Self {
        PageRequest {
            count,
            align: 1,
            zeroed: false,
            below: None,
        }
    }
    /// Aligns the first page's *physical* address to `pages` pages (a power
    /// of two).
    pub const fn align(mut self, pages: usize) -> Self {
        self.align = pages;
        self
    }
    /// Zeroes the pages.
    pub const fn zeroed(mut self) -> Self {
        self.zeroed = true;
        self
    }
    /// Places the whole run below `limit` (e.g. 1 MiB for a real-mode
    /// trampoline, 4 GiB for 32-bit DMA).
    pub const fn below(mut self, limit: PhysAddr) -> Self {
        self.below = Some(limit);
        self
    }
}

/// Pages from [`Heap::alloc_pages`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PageAllocation {
    /// Physical address of the first page.
    pub phys: PhysAddr,
    /// Its address through the phys→virt offset.
    pub virt: VirtAddr,
    /// Number of pages.
    pub count: usize,
}

/// Called when the heap is out of memory; see [`Heap::set_grow_handler`].
pub type GrowHandler<P> = fn(&Heap<P>, Layout) -> bool;

/// A memory allocator over physical page ranges. See the crate docs.
///
/// `P` is the [`Platform`]: the CPU id and interrupt guard.
#[repr(C)]
pub struct Heap<P: Platform> {
    // Read on every operation, written once at init: first, on lines no
    // lock or counter shares (the central lists that follow are aligned).
    caches: AtomicPtr<CpuCache>,
    /// CPU ids below this take the fast path: `ncpus`, or 0 when debug
    /// flags other than `CHECK_FREES` need the slow path on every call.
    fast_cpus: AtomicUsize,
    ncpus: AtomicUsize,
    debug: DebugFlags,
    state: AtomicU8,
    central: [CentralList; NUM_CLASSES],
    pages: PageHeap,
    early: Early,
    grow: AtomicPtr<()>,
    /// A grow handler is running: other failures do not call it again.
    growing: AtomicBool,
    _platform: PhantomData<fn() -> P>,
}

impl<P: Platform> Default for Heap<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Platform> Heap<P> {
    /// An empty heap, for a `static`, with frees checked
    /// ([`DebugFlags::CHECK_FREES`]). Every allocation fails (null) until
    /// [`init`](Self::init) (or [`init_early`](Self::init_early)).
    pub const fn new() -> Self {
        Self::with_debug(DebugFlags::CHECK_FREES)
    }

    /// An empty heap with exactly these checks; see [`DebugFlags`]. Leave
    /// out [`DebugFlags::CHECK_FREES`] only for a heap whose callers are
    /// trusted: see "Checked frees" in the `debug` module.
    pub const fn with_debug(debug: DebugFlags) -> Self {
        Heap {
            pages: PageHeap::new(),
            central: [const { CentralList::new() }; NUM_CLASSES],
            caches: AtomicPtr::new(null_mut()),
            fast_cpus: AtomicUsize::new(0),
            ncpus: AtomicUsize::new(0),
            state: AtomicU8::new(UNINIT),
            debug,
            early: Early::new(),
            grow: AtomicPtr::new(null_mut()),
            growing: AtomicBool::new(false),
            _platform: PhantomData,
        }
    }

    /// The debug checks this heap runs.
    pub fn debug_flags(&self) -> DebugFlags {
        self.debug
    }

    /// Gives the heap a static arena to serve allocations made before
    /// [`init`](Self::init) (see [`early`](crate::early)). Returns `false`
    /// if it already has one.
    ///
    /// # Time Complexity
    /// O(1).
    pub fn init_early(&self, arena: &'static mut [core::mem::MaybeUninit<u8>]) -> bool {
        let masked = IrqMasked::<P>::new();
        self.early.init(masked.token(), arena)
    }

    /// Bytes in use in the early arena.
    pub fn early_bytes_in_use(&self) -> usize {
        let masked = IrqMasked::<P>::new();
        self.early.used(masked.token())
    }

    /// A block from the early arena (null if it has none or is full).
    #[cold]
    fn early_alloc(&self, layout: Layout) -> *mut u8 {
        let masked = IrqMasked::<P>::new();
        self.early.alloc(masked.token(), layout)
    }

    /// Frees a block of the early arena.
    ///
    /// # Safety
    /// `ptr` came from the early arena with this layout.
    #[cold]
    unsafe fn early_free(&self, ptr: *mut u8, layout: Layout) {
        let masked = IrqMasked::<P>::new();
        // SAFETY: forwarded from the caller.
        unsafe { self.early.free(masked.token(), ptr, layout) }
    }

    /// `Err(OverlapsEarlyArena)` if `r`, seen through the phys→virt
    /// offset, shares bytes with the early arena.
    fn check_early(&self, offset: PhysOffset, r: &PhysRange) -> Result<(), HeapError> {
        let early = self.early.bounds();
        let start = r.start.as_u64().saturating_add(offset.as_usize() as u64);
        let end = r.end.as_u64().saturating_add(offset.as_usize() as u64);
        if start < early.end as u64 && (early.start as u64) < end {
            return Err(HeapError::OverlapsEarlyArena(*r));
        }
        Ok(())
    }

    /// Sets the function called when an allocation finds no memory (after
    /// the heap has flushed this CPU's cache and its reserves). If it
    /// returns `true` (typically after [`add_region`](Self::add_region) with
    /// memory the kernel just mapped) the allocation is retried once; if it
    /// returns `false` the allocation fails. It runs with no strata lock
    /// held, and may allocate. While it runs, other failures (nested in it,
    /// or on other CPUs) do not call it again: they fail. A handler set
    /// while another runs replaces it for the next failure. It is not
    /// called for requests that no growth could serve: a run longer than a
    /// region can be (`2^MAX_ORDER` pages), or a page request with a
    /// physical limit
    /// ([`PageRequest::below`]), since new memory may lie above the limit.
    pub fn set_grow_handler(&self, handler: GrowHandler<P>) {
        self.grow.store(handler as *mut (), Ordering::Release);
    }

    /// Initialises the heap with its regions, once.
    ///
    /// `phys_offset` is the mapping through which strata touches memory:
    /// `virt = phys + phys_offset` (0 for identity-mapped firmware, the
    /// direct-map base in a higher-half kernel). It must be page-aligned.
    /// `max_cpus` bounds the CPU ids that get a cache; the caches are carved
    /// from the regions here. Every region is checked (non-empty after
    /// trimming its edges inward to pages, no overflow, no overlap with
    /// another) before any is used; on such an error nothing is changed.
    /// (Ranges so large that they need more region descriptors than are
    /// left are the exception: the heap keeps the regions added so far and
    /// reports [`HeapError::TooManyRegions`].)
    ///
    /// `Ok` means the heap can allocate. The report says whether the
    /// per-CPU caches were set up: they are only where their storage takes
    /// at most `1 / CACHE_SHARE` of the heap ([`CACHE_SHARE`]); otherwise
    /// every CPU allocates from the central lists, which is correct and
    /// only slower under contention. A kernel can log the report and go on.
    /// A range that overlaps the early arena ([`init_early`](Self::init_early))
    /// is an error too.
    ///
    /// # Safety
    /// Every range is RAM that nothing else uses or will use, mapped
    /// read-write at `phys + phys_offset`, for as long as the heap is used.
    ///
    /// # Time Complexity
    /// O(regions² + metadata pages): the metadata is zeroed once.
    pub unsafe fn init(
        &self,
        phys_offset: usize,
        max_cpus: usize,
        regions: &[PhysRange],
    ) -> Result<InitReport, HeapError> {
        if max_cpus == 0 || phys_offset % PAGE_SIZE != 0 {
            return Err(HeapError::InvalidConfig);
        }
        if regions.len() > MAX_REGIONS {
            return Err(HeapError::TooManyRegions(regions[MAX_REGIONS]));
        }
        if self
            .state
            .compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(HeapError::AlreadyInitialized);
        }
        let offset = PhysOffset::new(phys_offset);
        let checked = check_regions(offset, regions)
            .and_then(|()| regions.iter().try_for_each(|r| self.check_early(offset, r)));
        if let Err(e) = checked {
            self.state.store(UNINIT, Ordering::Release);
            return Err(e);
        }
        self.pages.set_offset(offset);
        let masked = IrqMasked::<P>::new();
        let irq = masked.token();
        // Largest first: the first region descriptor is the one the free
        // check tries before any other (`PageHeap::meta_in_first`).
        let mut sorted = [PhysRange::new(PhysAddr::new(0), PhysAddr::new(0)); MAX_REGIONS];
        let sorted = &mut sorted[..regions.len()];
        sorted.copy_from_slice(regions);
        sorted.sort_unstable_by_key(|r| (core::cmp::Reverse(r.len()), r.start));
        let mut result = Ok(());
        for r in sorted.iter() {
            // SAFETY: the caller vouches for every range; they were checked
            // not to overlap each other, and the heap was empty.
            if let Err(e) = unsafe { self.pages.add_region(irq, *r) } {
                // Only a range too large for the region table gets here
                // (checked ranges are otherwise always accepted); the heap
                // keeps what it has.
                result = Err(e);
                break;
            }
        }
        let cached_cpus = self.init_caches(irq, max_cpus);
        let free_pages = self.pages.stats(irq).free_pages;
        self.state.store(READY, Ordering::Release);
        result.map(|()| InitReport {
            free_pages,
            cached_cpus,
        })
    }

    /// Sets up the caches of `max_cpus` CPUs if their storage fits in
    /// `1 / CACHE_SHARE` of the heap. Returns the CPUs that got one.
    fn init_caches(&self, irq: IrqOff<'_>, max_cpus: usize) -> usize {
        let Some(bytes) = max_cpus.checked_mul(CACHE_STRIDE) else {
            return 0;
        };
        let pages = bytes.div_ceil(PAGE_SIZE) as u64;
        if pages > self.pages.stats(irq).managed_pages / CACHE_SHARE {
            return 0;
        }
        let Some(run) = self.pages.alloc(irq, pages, 0, None, kind::INTERNAL) else {
            return 0;
        };
        let base = self.pages.virt(run.region.pfn(run.index));
        for cpu in 0..max_cpus {
            // SAFETY: the run holds max_cpus strides, page-aligned; each
            // stride is 64-byte aligned and CPU_BYTES long; the run is
            // INTERNAL, so no free can release it.
            unsafe { CpuCache::init(base.add(cpu * CACHE_STRIDE).as_mut_ptr()) };
        }
        self.caches.store(base.as_mut_ptr(), Ordering::Relaxed);
        self.ncpus.store(max_cpus, Ordering::Release);
        if DebugFlags::CHECK_FREES.contains(self.debug) {
            self.fast_cpus.store(max_cpus, Ordering::Release);
        }
        max_cpus
    }

    /// Whether [`init`](Self::init) has completed.
    pub fn is_initialized(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// Adds a region at run time (memory hot-add, or a kernel growing its
    /// heap). Safe to call while other CPUs allocate.
    ///
    /// # Errors
    /// As for [`init`](Self::init), naming the range; also
    /// [`HeapError::NotInitialized`] before `init`.
    ///
    /// # Safety
    /// As for [`init`](Self::init), for `range`.
    ///
    /// # Time Complexity
    /// O(regions + metadata pages).
    pub unsafe fn add_region(&self, range: PhysRange) -> Result<(), HeapError> {
        if !self.is_initialized() {
            return Err(HeapError::NotInitialized);
        }
        self.check_early(self.pages.offset(), &range)?;
        let masked = IrqMasked::<P>::new();
        // SAFETY: forwarded from the caller.
        unsafe { self.pages.add_region(masked.token(), range) }.map(|_| ())
    }

    /// The phys→virt offset given to `init`.
    pub fn phys_offset(&self) -> usize {
        self.pages.offset().as_usize()
    }

    /// The cache of CPU `cpu` if `cpu` is below `limit` (`ncpus`, or
    /// `fast_cpus` on the fast path).
    #[inline(always)]
    fn cache_below(&self, cpu: usize, limit: &AtomicUsize) -> Option<&CpuCache> {
        if cpu < limit.load(Ordering::Acquire) {
            let base = self.caches.load(Ordering::Relaxed);
            // SAFETY: `ncpus` and `fast_cpus` (at most `ncpus`) are published
            // (Release, read with Acquire) after the caches at `base` are
            // initialised, so `base` is not null and `cpu < ncpus` caches
            // live there, as long as the heap.
            unsafe {
                core::hint::assert_unchecked(!base.is_null());
                Some(&*base.byte_add(cpu * CACHE_STRIDE))
            }
        } else {
            None
        }
    }

    #[inline(always)]
    fn cache(&self, cpu: usize) -> Option<&CpuCache> {
        self.cache_below(cpu, &self.ncpus)
    }

    // ---- small objects ----------------------------------------------------
    //
    // The fast path is what `alloc_small` and `free_small` inline into the
    // caller: the CPU id, the cache, its claim, one stack operation (and on
    // free the object check). Everything else is a call in tail position
    // (refill, flush, a claimed cache, an id without a cache, the debug
    // flags), so the fast path needs no stack frame of its own.

    /// Allocates one object of `class` for `layout`: the CPU cache if it can
    /// be claimed, else the central list. Null when out of memory.
    ///
    /// # Time Complexity
    /// O(1) on a cache hit; one batch otherwise.
    #[inline(always)]
    pub(crate) fn alloc_small(&self, class: SizeClass, layout: Layout) -> *mut u8 {
        match self.cache_below(P::cpu_id(), &self.fast_cpus) {
            Some(cache) => self.alloc_cached(cache, class, layout),
            None => self.alloc_slow(class, layout),
        }
    }

    /// Allocates from `cache`, or from the central list if it is claimed.
    #[inline(always)]
    fn alloc_cached(&self, cache: &CpuCache, class: SizeClass, layout: Layout) -> *mut u8 {
        let Some(claimed) = cache.claim::<P>() else {
            return self.alloc_contended(cache, class, layout);
        };
        P::cache_claimed();
        match claimed.pop(class) {
            Some(obj) => obj.as_mut_ptr(),
            None => self.alloc_refill(claimed, class, layout),
        }
    }

    /// Every allocation the fast path does not serve: a CPU id without a
    /// cache, a heap with debug flags, a heap before `init`.
    #[inline(never)]
    fn alloc_slow(&self, class: SizeClass, layout: Layout) -> *mut u8 {
        let obj = match self.cache(P::cpu_id()) {
            Some(cache) => self.alloc_cached(cache, class, layout),
            None => self.alloc_central(class, layout),
        };
        if self.debug.intersects(DebugFlags::ON_ALLOC) && !obj.is_null() {
            self.debug_alloc(VirtAddr::from_ptr(obj), class, layout);
        }
        obj
    }

    /// The cache was claimed by another context: the central path.
    #[cold]
    #[inline(never)]
    fn alloc_contended(&self, cache: &CpuCache, class: SizeClass, layout: Layout) -> *mut u8 {
        cache.count_fallback();
        self.alloc_central(class, layout)
    }

    /// Refills the claimed, empty stack of `class`, releases the claim and
    /// returns an object (or retries when out of memory).
    #[inline(never)]
    fn alloc_refill(&self, claimed: Claimed<'_>, class: SizeClass, layout: Layout) -> *mut u8 {
        let obj = self.refill(&claimed, class);
        drop(claimed);
        match obj {
            Some(obj) => obj.as_mut_ptr(),
            None => self.alloc_retry(class, layout),
        }
    }

    #[inline(never)]
    fn refill(&self, claimed: &Claimed<'_>, class: SizeClass) -> Option<VirtAddr> {
        let masked = IrqMasked::<P>::new();
        let irq = masked.token();
        self.drain_if_requested(claimed, irq);
        let poison = self.debug.contains(DebugFlags::POISON);
        claimed.refill(
            irq,
            &self.central[class.index()],
            &self.pages,
            class,
            poison,
        )
    }

    /// Drains the claimed cache if a drain was asked for (see
    /// [`drain_cpu`](Self::drain_cpu)); returns whether it did.
    #[inline]
    fn drain_if_requested(&self, claimed: &Claimed<'_>, irq: IrqOff<'_>) -> bool {
        let drain = claimed.take_drain_request();
        if drain {
            claimed.drain(irq, &self.central, &self.pages);
        }
        drain
    }

    fn take_one(&self, class: SizeClass) -> Option<VirtAddr> {
        let mut obj = [VirtAddr::new(0)];
        let masked = IrqMasked::<P>::new();
        let irq = masked.token();
        let poison = self.debug.contains(DebugFlags::POISON);
        (self.central[class.index()].take(irq, &self.pages, class, &mut obj, poison) == 1)
            .then_some(obj[0])
    }

    /// The central path for one object.
    #[inline(never)]
    pub(crate) fn alloc_central(&self, class: SizeClass, layout: Layout) -> *mut u8 {
        match self.take_one(class) {
            Some(obj) => obj.as_mut_ptr(),
            None => self.alloc_retry(class, layout),
        }
    }

    /// Out of pages: give cached objects and the central reserves back to
    /// the page heap, so a retry can succeed. Every cache that can be
    /// claimed from here is drained: this CPU's (unless the context this
    /// one interrupted holds it) and, on a preemptive platform, every other
    /// CPU's that is not in use. Every other cache is asked to drain on its
    /// owner's next refill or flush, so an idle CPU's cache does not keep
    /// memory another CPU needs for long.
    #[cold]
    fn relieve(&self) {
        for cpu in 0..self.ncpus.load(Ordering::Acquire) {
            let Some(cache) = self.cache(cpu) else { break };
            match self.claim_from_here(cache, cpu) {
                Some(claimed) => self.drain_claimed(claimed),
                None => cache.request_drain(),
            }
        }
        self.reclaim();
    }

    /// Claims CPU `cpu`'s cache from the calling context, if it may and
    /// the cache is free: its own CPU's with the platform's claim, another
    /// CPU's with a compare-exchange, except on a non-preemptive platform,
    /// whose claims only their own CPU may take.
    fn claim_from_here<'c>(&self, cache: &'c CpuCache, cpu: usize) -> Option<Claimed<'c>> {
        cache.claim_from::<P>(cpu == P::cpu_id())
    }

    /// Whether to try again after a failure: relieves the heap if
    /// `relievable` (the heap is large enough for the request), then asks
    /// the grow handler if the failure persists and `growable` (more memory
    /// anywhere could serve the request). `retry` is the attempt.
    #[cold]
    fn after_failure<T>(
        &self,
        layout: Layout,
        relievable: bool,
        growable: bool,
        mut retry: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if relievable {
            self.relieve();
            if let Some(done) = retry() {
                return Some(done);
            }
        }
        if !growable || self.growing.swap(true, Ordering::Acquire) {
            return None;
        }
        // Cleared when this returns or the handler unwinds.
        let _growing = Growing(&self.growing);
        let handler = self.grow.load(Ordering::Acquire);
        if handler.is_null() {
            return None;
        }
        // SAFETY: `grow` only ever holds a `GrowHandler<P>` stored by
        // `set_grow_handler`.
        let f: GrowHandler<P> = unsafe { core::mem::transmute::<*mut (), GrowHandler<P>>(handler) };
        if f(self, layout) {
            retry()
        } else {
            None
        }
    }

    /// Out of pages for a small object.
    #[cold]
    fn alloc_retry(&self, class: SizeClass, layout: Layout) -> *mut u8 {
        if !self.is_initialized() {
            return self.early_alloc(layout);
        }
        match self.after_failure(layout, true, true, || self.take_one(class)) {
            Some(obj) => obj.as_mut_ptr(),
            None => null_mut(),
        }
    }

    /// Frees one object of `class` after checking it: to the CPU cache if
    /// it can be claimed, else to the central list.
    ///
    /// # Panics
    /// If `ptr` is not an object of `class` (see the module docs).
    #[inline(always)]
    pub(crate) fn free_small(&self, ptr: *mut u8, class: SizeClass, layout: Layout) {
        let addr = VirtAddr::from_ptr(ptr);
        if self.debug.contains(DebugFlags::CHECK_FREES) {
            match self.pages.meta_in_first(addr) {
                Some(m) if Span::is_object_on(m, addr, class) => {}
                _ => return self.free_small_elsewhere(ptr, class, layout),
            }
        } else if self.early.contains(ptr) {
            return self.free_foreign(ptr, class, layout);
        }
        self.free_checked(addr, class, layout)
    }

    /// A checked free whose pointer is not an object in the first region:
    /// the check over every region, then the rest of the free.
    #[inline(never)]
    fn free_small_elsewhere(&self, ptr: *mut u8, class: SizeClass, layout: Layout) {
        let addr = VirtAddr::from_ptr(ptr);
        if !Span::is_object(&self.pages, addr, class) {
            return self.free_foreign(ptr, class, layout);
        }
        self.free_checked(addr, class, layout)
    }

    /// The free of an object that passed the checks.
    #[inline(always)]
    fn free_checked(&self, addr: VirtAddr, class: SizeClass, layout: Layout) {
        match self.cache_below(P::cpu_id(), &self.fast_cpus) {
            Some(cache) => self.free_cached(cache, class, addr),
            None => self.free_slow(addr, class, layout),
        }
    }

    /// Frees a checked object to `cache`, or to the central list if it is
    /// claimed.
    #[inline(always)]
    fn free_cached(&self, cache: &CpuCache, class: SizeClass, addr: VirtAddr) {
        let Some(claimed) = cache.claim::<P>() else {
            return self.free_contended(cache, class, addr);
        };
        P::cache_claimed();
        if !claimed.push(class, addr) {
            self.flush(claimed, class, addr);
        }
    }

    /// Every checked free the fast path does not serve: a CPU id without a
    /// cache, a heap with debug flags, a heap before `init`.
    #[inline(never)]
    fn free_slow(&self, addr: VirtAddr, class: SizeClass, layout: Layout) {
        if self.debug.intersects(DebugFlags::ON_FREE) {
            self.debug_free(addr, class, layout);
        }
        match self.cache(P::cpu_id()) {
            Some(cache) => self.free_cached(cache, class, addr),
            None => self.free_central(class, addr),
        }
    }

    /// The cache was claimed by another context: the central path.
    #[cold]
    #[inline(never)]
    fn free_contended(&self, cache: &CpuCache, class: SizeClass, addr: VirtAddr) {
        cache.count_fallback();
        self.free_central(class, addr)
    }

    /// Flushes a batch of the claimed, full stack of `class` (or drains
    /// the whole cache if that was asked for), pushes `addr` and releases
    /// the claim.
    #[inline(never)]
    fn flush(&self, claimed: Claimed<'_>, class: SizeClass, addr: VirtAddr) {
        let masked = IrqMasked::<P>::new();
        let irq = masked.token();
        if self.drain_if_requested(&claimed, irq) {
            let pushed = claimed.push(class, addr);
            debug_assert!(pushed, "a drained stack has room");
        } else {
            claimed.flush_and_push(irq, &self.central[class.index()], &self.pages, class, addr);
        }
    }

    /// The central path for one object.
    #[inline(never)]
    pub(crate) fn free_central(&self, class: SizeClass, addr: VirtAddr) {
        let masked = IrqMasked::<P>::new();
        self.central[class.index()].give(masked.token(), &self.pages, class, &[addr]);
    }

    /// A free that is not an object of `class`: an early block, or a bug.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn free_foreign(&self, ptr: *mut u8, class: SizeClass, layout: Layout) {
        if self.early.contains(ptr) {
            // SAFETY: the block came from the early arena (it lies in it)
            // with this layout (GlobalAlloc's contract).
            return unsafe { self.early_free(ptr, layout) };
        }
        let addr = VirtAddr::from_ptr(ptr);
        bad_free(addr, layout, Span::diagnose(&self.pages, addr, class))
    }

    // ---- debug checks ------------------------------------------------------

    /// Verifies the poison of a freshly handed-out object and canaries its
    /// slack.
    #[cold]
    #[inline(never)]
    fn debug_alloc(&self, obj: VirtAddr, class: SizeClass, layout: Layout) {
        if self.early.contains(obj.as_mut_ptr()) {
            return;
        }
        let size = class.size();
        if self.debug.contains(DebugFlags::POISON) {
            let body = obj.add(debug::LINK_BYTES);
            // SAFETY: the object is ours and `size` bytes long.
            let bad =
                unsafe { debug::find_not(body, size - debug::LINK_BYTES, debug::POISON_FREE) };
            if let Some((at, byte)) = bad {
                panic!(
                    "strata: write after free: byte {} of the free {size}-byte object at {obj} \
                     is {byte:#04x}, not the poison {:#04x}",
                    at + debug::LINK_BYTES,
                    debug::POISON_FREE
                );
            }
        }
        if self.debug.contains(DebugFlags::CANARY) {
            let slack = (size - layout.size()).min(debug::CANARY_MAX);
            // SAFETY: the slack is part of our object.
            unsafe { debug::fill(obj.add(layout.size()), slack, debug::CANARY_BYTE) };
        }
    }

    /// Checks the canary, detects a double free, and poisons the object.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn debug_free(&self, obj: VirtAddr, class: SizeClass, layout: Layout) {
        let size = class.size();
        if self.debug.contains(DebugFlags::DOUBLE_FREE) && self.is_free_object(obj, class) {
            panic!("strata: double free of {obj} (a {size}-byte object that is already free)");
        }
        if self.debug.contains(DebugFlags::CANARY) {
            self.check_canary(obj, layout.size(), size);
        }
        if self.debug.contains(DebugFlags::POISON) {
            // SAFETY: the object is being freed: its bytes are the heap's.
            unsafe { debug::fill(obj, size, debug::POISON_FREE) };
        }
    }

    #[track_caller]
    fn check_canary(&self, obj: VirtAddr, used: usize, size: usize) {
        let slack = (size - used).min(debug::CANARY_MAX);
        // SAFETY: the slack is part of the live block being freed.
        let bad = unsafe { debug::find_not(obj.add(used), slack, debug::CANARY_BYTE) };
        if let Some((at, byte)) = bad {
            panic!(
                "strata: overflow past the end of the {used}-byte block at {obj}: \
                 byte {at} after its end is {byte:#04x}, not the canary {:#04x}",
                debug::CANARY_BYTE
            );
        }
    }

    /// Whether `obj` is already free: cached on a CPU whose cache can be
    /// looked at from here (see `claim_from_here`), or free in its span.
    fn is_free_object(&self, obj: VirtAddr, class: SizeClass) -> bool {
        for cpu in 0..self.ncpus.load(Ordering::Acquire) {
            let Some(cache) = self.cache(cpu) else { break };
            if let Some(claimed) = self.claim_from_here(cache, cpu) {
                if claimed.contains(class, obj) {
                    return true;
                }
            }
        }
        let masked = IrqMasked::<P>::new();
        self.central[class.index()].is_free(masked.token(), &self.pages, class, obj)
    }

    // ---- page runs ---------------------------------------------------------

    /// A run for a large layout; null if out of memory or the alignment
    /// cannot be honoured through the offset.
    #[inline(never)]
    pub(crate) fn alloc_large(&self, layout: Layout) -> *mut u8 {
        let align = layout.align();
        if align > self.pages.offset().alignment() {
            return null_mut();
        }
        let n = layout.size().div_ceil(PAGE_SIZE).max(1);
        let align_order = (align / PAGE_SIZE).max(1).trailing_zeros();
        let Some(run) = self.alloc_run(n as u64, align_order, None, layout) else {
            return if self.is_initialized() {
                null_mut()
            } else {
                self.early_alloc(layout)
            };
        };
        let virt = self.pages.virt(run.region.pfn(run.index));
        if self.debug.contains(DebugFlags::CANARY) {
            let slack = (n * PAGE_SIZE - layout.size()).min(debug::CANARY_MAX);
            // SAFETY: the slack lies in the run's last page, which is ours.
            unsafe { debug::fill(virt.add(layout.size()), slack, debug::CANARY_BYTE) };
        }
        virt.as_mut_ptr()
    }

    fn try_run(&self, n: u64, align_order: u32, limit: Option<Pfn>) -> Option<Run<'_>> {
        let masked = IrqMasked::<P>::new();
        self.pages
            .alloc(masked.token(), n, align_order, limit, kind::RUN)
    }

    /// Pages the heap manages, metadata excluded.
    fn managed_pages(&self) -> u64 {
        let masked = IrqMasked::<P>::new();
        self.pages.stats(masked.token()).managed_pages
    }

    fn alloc_run(
        &self,
        n: u64,
        align_order: u32,
        limit: Option<PhysAddr>,
        layout: Layout,
    ) -> Option<Run<'_>> {
        let limit = limit.map(|l| l.pfn());
        let run = match self.try_run(n, align_order, limit) {
            Some(run) => run,
            // No region holds more than 2^MAX_ORDER pages: nothing can
            // serve such a request.
            None if !self.is_initialized() || n > 1 << MAX_ORDER => return None,
            // Draining caches cannot make more pages than the heap has;
            // only the grow handler can, and only without a limit.
            None => {
                self.after_failure(layout, n <= self.managed_pages(), limit.is_none(), || {
                    self.try_run(n, align_order, limit)
                })?
            }
        };
        Some(run)
    }

    /// The run starting at `addr`, checked to be a live run of `n` pages.
    fn find_run(&self, addr: VirtAddr, n: u64) -> Result<Run<'_>, BadFree> {
        match self.pages.find(addr) {
            None => Err(BadFree::Foreign),
            Some((region, index)) => {
                let m = region.meta(index);
                let page_start = addr.as_usize() % PAGE_SIZE == 0;
                match m.kind() {
                    kind::RUN if page_start && m.a.load(Ordering::Relaxed) as u64 == n => {
                        Ok(Run { region, index })
                    }
                    kind::RUN if page_start => Err(BadFree::WrongLength {
                        pages: m.a.load(Ordering::Relaxed) as u64,
                    }),
                    k if kind::is_span(k) => Err(BadFree::WrongClass {
                        span_class: span::class_of_tag(m.tag()),
                    }),
                    kind::CACHED => Err(BadFree::CachedPage),
                    _ => Err(BadFree::NotAllocated),
                }
            }
        }
    }

    /// Frees a large block (or an early one).
    #[inline(never)]
    #[track_caller]
    pub(crate) fn free_large(&self, ptr: *mut u8, layout: Layout) {
        let n = layout.size().div_ceil(PAGE_SIZE).max(1) as u64;
        let addr = VirtAddr::from_ptr(ptr);
        match self.find_run(addr, n) {
            Ok(run) => {
                if self.debug.contains(DebugFlags::CANARY) {
                    self.check_canary(addr, layout.size(), n as usize * PAGE_SIZE);
                }
                self.release_run(run, n)
            }
            // SAFETY: the block lies in the early arena, so it came from it
            // with this layout (GlobalAlloc's contract).
            Err(BadFree::Foreign) if self.early.contains(ptr) => unsafe {
                self.early_free(ptr, layout)
            },
            Err(why) => bad_free(addr, layout, why),
        }
    }

    fn release_run(&self, run: Run<'_>, n: u64) {
        let masked = IrqMasked::<P>::new();
        self.pages.free(masked.token(), run, n);
    }

    /// Resizes a large block in place: shrinks always, grows if the pages
    /// after it are free. Returns whether it did.
    pub(crate) fn resize_large(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> bool {
        let old_n = layout.size().div_ceil(PAGE_SIZE).max(1) as u64;
        let new_n = new_size.div_ceil(PAGE_SIZE).max(1) as u64;
        let addr = VirtAddr::from_ptr(ptr);
        let run = match self.find_run(addr, old_n) {
            Ok(run) => run,
            Err(why) => bad_free(addr, layout, why),
        };
        let masked = IrqMasked::<P>::new();
        let irq = masked.token();
        if new_n <= old_n {
            if new_n < old_n {
                self.pages.shrink(irq, run, old_n, new_n);
            }
            true
        } else {
            self.pages.grow(irq, run, old_n, new_n)
        }
    }

    /// Checks that `ptr` is a live small object of `class` (for realloc in
    /// place).
    pub(crate) fn check_small(&self, ptr: *mut u8, class: SizeClass, layout: Layout) {
        let addr = VirtAddr::from_ptr(ptr);
        if self.debug.contains(DebugFlags::CHECK_FREES)
            && !Span::is_object(&self.pages, addr, class)
        {
            bad_free(addr, layout, Span::diagnose(&self.pages, addr, class));
        }
    }

    /// Whether `ptr` is a block of the early arena.
    pub(crate) fn is_early(&self, ptr: *mut u8) -> bool {
        self.early.contains(ptr)
    }

    // ---- page API ------------------------------------------------------------

    /// Allocates physical pages for a kernel: page tables, DMA buffers,
    /// stacks. `None` if no run satisfies the request.
    ///
    /// The alignment applies to the physical address. The run is tagged as
    /// allocated like any large block and is freed with
    /// [`free_pages`](Self::free_pages). A single page with no alignment
    /// and no limit comes from the calling CPU's page list, without the page
    /// heap's lock (see "Page lists" in [`cpu_cache`](crate::cpu_cache)).
    ///
    /// # Time Complexity
    /// O(1) for a single page from the CPU's list; otherwise O(regions +
    /// MAX_ORDER) plus zeroing; with `below`, O(free blocks) of the regions
    /// under the limit.
    pub fn alloc_pages(&self, req: PageRequest) -> Option<PageAllocation> {
        if req.count == 0 || !req.align.is_power_of_two() {
            return None;
        }
        let cached = match (req.count, req.align, req.below) {
            (1, 1, None) => self.alloc_page_cached(),
            _ => None,
        };
        let virt = match cached {
            Some(virt) => virt,
            None => {
                let align_order = req.align.trailing_zeros();
                let bytes = req.count.checked_mul(PAGE_SIZE)?;
                let layout = Layout::from_size_align(bytes, PAGE_SIZE).ok()?;
                let run = self.alloc_run(req.count as u64, align_order, req.below, layout)?;
                self.pages.virt(run.region.pfn(run.index))
            }
        };
        let phys = self.pages.offset().to_phys(virt);
        if req.zeroed {
            // SAFETY: the run is ours, mapped at `virt`, count pages long.
            unsafe { core::ptr::write_bytes(virt.as_mut_ptr::<u8>(), 0, req.count * PAGE_SIZE) };
        }
        Some(PageAllocation {
            phys,
            virt,
            count: req.count,
        })
    }

    /// Frees pages from [`alloc_pages`](Self::alloc_pages). A single page
    /// goes onto the calling CPU's page list.
    ///
    /// # Panics
    /// If `phys` is not the first page of a live run of `count` pages
    /// (including a single page that is already free on a CPU's list).
    ///
    /// # Safety
    /// Nothing uses the pages any more.
    ///
    /// # Time Complexity
    /// O(regions + log(count) × MAX_ORDER).
    #[track_caller]
    pub unsafe fn free_pages(&self, phys: PhysAddr, count: usize) {
        let addr = self.pages.offset().to_virt(phys);
        match self.find_run(addr, count as u64) {
            Ok(run) if count == 1 => self.free_page(run, addr),
            Ok(run) => self.release_run(run, count as u64),
            Err(why) => bad_page_free(addr, count as u64, why),
        }
    }

    /// A single page from this CPU's page list, refilled with a batch from
    /// the page heap when empty; `None` if the list cannot be used (no
    /// cache, or claimed) or the page heap is out of pages.
    fn alloc_page_cached(&self) -> Option<VirtAddr> {
        let cache = self.cache(P::cpu_id())?;
        let Some(claimed) = cache.claim::<P>() else {
            cache.count_fallback();
            return None;
        };
        P::cache_claimed();
        let page = match claimed.pop_page() {
            Some(page) => Some(page),
            None => {
                let masked = IrqMasked::<P>::new();
                let irq = masked.token();
                self.drain_if_requested(&claimed, irq);
                claimed.refill_pages(irq, &self.pages)
            }
        };
        drop(claimed);
        let page = page?;
        // The page is ours now: a live one-page run again, whose free is
        // accepted.
        match self.pages.meta_of(page) {
            Some(m) if m.change_kind(kind::CACHED, kind::RUN) => Some(page),
            _ => unreachable!("strata: page {page} on a CPU's page list is not marked as cached"),
        }
    }

    /// Frees the checked one-page run `run` at `addr`: onto this CPU's page
    /// list, or to the page heap if the list cannot be used. The page's
    /// kind changes from `RUN` to `CACHED` by one compare-exchange, so of
    /// two frees of one page racing on two CPUs (or through `dealloc` and
    /// `free_pages`) exactly one succeeds and the other panics.
    #[track_caller]
    fn free_page(&self, run: Run<'_>, addr: VirtAddr) {
        let m = run.region.meta(run.index);
        if let Some(cache) = self.cache(P::cpu_id()) {
            if let Some(claimed) = cache.claim::<P>() {
                P::cache_claimed();
                if !m.change_kind(kind::RUN, kind::CACHED) {
                    bad_page_free(addr, 1, BadFree::CachedPage);
                }
                if !claimed.push_page(addr) {
                    let masked = IrqMasked::<P>::new();
                    let irq = masked.token();
                    if self.drain_if_requested(&claimed, irq) {
                        let pushed = claimed.push_page(addr);
                        debug_assert!(pushed, "a drained page list has room");
                    } else {
                        claimed.flush_pages_and_push(irq, &self.pages, addr);
                    }
                }
                return;
            }
            cache.count_fallback();
        }
        self.release_run(run, 1)
    }

    // ---- maintenance -----------------------------------------------------------

    /// Gives every object and page cached by CPU `cpu` back to the central
    /// lists and the page heap (a CPU going offline, memory pressure).
    /// Never waits, and is safe from any context: another thread, an
    /// interrupt handler, a CPU draining itself.
    ///
    /// It drains at once when it can claim the cache from here: its own
    /// CPU's cache unless the context it interrupted is using it, and on a
    /// preemptive platform another CPU's cache that is not in use. On a
    /// [`NON_PREEMPTIVE`](Platform::NON_PREEMPTIVE) platform another CPU's
    /// cache cannot be claimed safely (its owner claims with a plain load
    /// and store); then, and when the cache is in use, it marks the cache
    /// and returns [`Drain::Requested`]: the owner drains it on its next
    /// refill or flush. For a CPU that will not allocate again (offline),
    /// use [`drain_stopped_cpu`](Self::drain_stopped_cpu).
    ///
    /// # Time Complexity
    /// O(cached objects × regions).
    pub fn drain_cpu(&self, cpu: usize) -> Drain {
        let Some(cache) = self.cache(cpu) else {
            return Drain::NoCache;
        };
        match self.claim_from_here(cache, cpu) {
            Some(claimed) => {
                self.drain_claimed(claimed);
                Drain::Drained
            }
            None => {
                cache.request_drain();
                Drain::Requested
            }
        }
    }

    /// Drains the cache of CPU `cpu`, which is stopped, from another CPU,
    /// on any platform: what a kernel calls when it takes a CPU offline.
    /// Returns [`Drain::Requested`] only if the cache is claimed, which
    /// under the contract below means the CPU stopped inside the allocator.
    ///
    /// # Safety
    /// CPU `cpu` runs no allocator code (no allocation, free or interrupt
    /// handler that allocates) from the call until it returns: it is
    /// offline, or parked in a loop with interrupts masked. Its earlier
    /// allocator calls happen-before this call (it announced that it
    /// stopped with a Release store or a lock that the caller then
    /// observed).
    ///
    /// # Time Complexity
    /// O(cached objects × regions).
    pub unsafe fn drain_stopped_cpu(&self, cpu: usize) -> Drain {
        let Some(cache) = self.cache(cpu) else {
            return Drain::NoCache;
        };
        match cache.claim_atomic() {
            Some(claimed) => {
                self.drain_claimed(claimed);
                Drain::Drained
            }
            None => Drain::Requested,
        }
    }

    /// Gives a claimed cache's objects back to the central lists; the
    /// claim is released when `claimed` drops.
    fn drain_claimed(&self, claimed: Claimed<'_>) {
        let masked = IrqMasked::<P>::new();
        let _ = claimed.take_drain_request();
        claimed.drain(masked.token(), &self.central, &self.pages);
    }

    /// Gives every empty span back to the page heap (memory pressure).
    /// Returns the pages released.
    ///
    /// # Time Complexity
    /// O(spans).
    pub fn reclaim(&self) -> u64 {
        let mut freed = 0;
        for central in &self.central {
            let masked = IrqMasked::<P>::new();
            freed += central.reclaim(masked.token(), &self.pages);
        }
        freed
    }

    /// A snapshot of the heap's counters; see [`HeapStats`].
    pub fn stats(&self) -> HeapStats {
        let masked = IrqMasked::<P>::new();
        let irq = masked.token();
        let pages = self.pages.stats(irq);
        let mut s = HeapStats {
            pages,
            cpus: self.ncpus.load(Ordering::Acquire),
            large_runs: pages.runs,
            large_pages: pages.run_pages,
            ..HeapStats::default()
        };
        for (i, c) in self.central.iter().enumerate() {
            s.classes[i] = c.stats(irq);
        }
        for cpu in 0..s.cpus {
            let st = self.cache(cpu).map(|c| c.stats()).unwrap_or_default();
            s.cached_bytes += st.cached_bytes;
            s.cached_objects += st.cached_objects;
            s.cached_pages += st.cached_pages;
            if cpu < STATS_CPUS {
                s.per_cpu[cpu] = st;
            }
        }
        // Pages on CPU page lists are one-page runs to the page heap; to
        // the caller they are free.
        s.large_runs = s.large_runs.saturating_sub(s.cached_pages);
        s.large_pages = s.large_pages.saturating_sub(s.cached_pages);
        s
    }

    /// The region descriptors, as ranges. For reports.
    pub fn regions(&self) -> impl Iterator<Item = PhysRange> + '_ {
        (0..MAX_REGIONS).map_while(|i| self.pages.region_range(i))
    }

    /// Checks every invariant of the page heap's free lists.
    ///
    /// # Panics
    /// On the first violation.
    pub fn check(&self) {
        let masked = IrqMasked::<P>::new();
        self.pages.check(masked.token());
    }
}

/// Checks regions for init: each one alone, and pairwise overlap.
fn check_regions(offset: PhysOffset, regions: &[PhysRange]) -> Result<(), HeapError> {
    for (i, r) in regions.iter().enumerate() {
        let (start, end) = (r.start.as_u64(), r.end.as_u64());
        let (first, last) = (start.div_ceil(PAGE_SIZE as u64), end / PAGE_SIZE as u64);
        if end <= start || first >= last {
            return Err(HeapError::EmptyRegion(*r));
        }
        if last - first < 2 {
            return Err(HeapError::TooSmall(*r));
        }
        if end.checked_add(offset.as_usize() as u64).is_none() || end > usize::MAX as u64 {
            return Err(HeapError::AddressOverflow {
                start: r.start,
                len: end - start,
            });
        }
        for other in &regions[..i] {
            if other.overlaps(r) {
                return Err(HeapError::Overlap {
                    new: *r,
                    existing: *other,
                });
            }
        }
    }
    Ok(())
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_free(addr: VirtAddr, layout: Layout, why: BadFree) -> ! {
    let (size, align) = (layout.size(), layout.align());
    match why {
        BadFree::Foreign => {
            panic!("strata: free of {addr}: the address is not inside any region of this heap")
        }
        BadFree::NotAllocated | BadFree::CachedPage => panic!(
            "strata: free of {addr}: no block is allocated there (freed twice, or never allocated)"
        ),
        BadFree::WrongClass { span_class } => panic!(
            "strata: free of {addr} with size {size} align {align}: the block is a {}-byte object, \
             not of this layout's size class",
            span_class.size()
        ),
        BadFree::Misaligned { object } => panic!(
            "strata: free of {addr}: not at an object boundary (the object there starts at {object})"
        ),
        BadFree::IsRun => panic!(
            "strata: free of {addr} with size {size} align {align}: the block is a page run, \
             not a small object of this layout"
        ),
        BadFree::WrongLength { pages } => panic!(
            "strata: free of {addr} with size {size}: the block is a run of {pages} pages, \
             not {} (wrong layout)",
            size.div_ceil(PAGE_SIZE).max(1)
        ),
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn bad_page_free(addr: VirtAddr, count: u64, why: BadFree) -> ! {
    match why {
        BadFree::WrongLength { pages } => {
            panic!("strata: free_pages of {addr}: the run there is {pages} pages, not {count}")
        }
        BadFree::CachedPage => {
            panic!("strata: free_pages of {addr}: the page is already free (double free)")
        }
        _ => panic!("strata: free_pages of {addr} ({count} pages): not a live page run ({why:?})"),
    }
}
