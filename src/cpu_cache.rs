//! Per-CPU caches: the lock-free fast path.
//!
//! # What it owns
//!
//! One `CpuCache` per CPU id below `max_cpus`, each holding, for every
//! size class, a bounded stack of free objects (an array of addresses,
//! out of band). Allocation pops, free pushes; neither takes a lock or
//! masks interrupts. An empty stack is refilled with one batch from the
//! class's central list (`central.rs`); a full one flushes one batch
//! back. A batch is half the stack, so a cache that was just refilled or
//! flushed absorbs another half-stack of work before it goes back to the
//! central list.
//!
//! # Capacities
//!
//! A stack holds `clamp(CACHE_BYTES_PER_CLASS / size, 8, 256)` objects:
//! 64 KiB of objects per class, at least 8 objects (the classes above
//! 8 KiB) and at most 256 (the classes up to 256 B). The starting points
//! were TCMalloc (about 64 KiB / size objects per batch, 2–32 a batch, and
//! a budget of about 1.5 MiB per CPU) and Linux SLUB's per-CPU sheaves (60
//! objects below 256 B, 4 at 4 KiB and above). The bounds then came from
//! measurement, on the benchmark's random mix (sizes log-uniform
//! 8 B–16 KiB, 10,000 live slots), counting the operations that reach a
//! central list: 24 in 1,000 with 32 KiB per class and at least 4 objects,
//! 12.6 with 64 KiB, 7.1 with 64 KiB and at least 8 (and 3.3 with 128 KiB).
//! Most of them come from the largest classes, whose stacks are shortest:
//! a class used like a random walk reaches an end of a stack of `c` slots,
//! refilled or flushed to the middle, after about `c² / 4` operations.
//! Every such trip takes a lock that the other CPUs take too, so it is
//! what stands between two CPUs and twice one CPU's throughput (the page
//! heap is reached 0.1 times per 1,000 operations). The bound per CPU is
//! [`CACHE_BYTES_PER_CPU`] (4.1 MiB if every class is full, which only a
//! workload using all 71 classes at once reaches; out of memory drains
//! the caches, see `Heap`), and the slot arrays cost [`SLOTS_PER_CPU`] × 8
//! bytes (7,532 slots, 59 KiB) per CPU.
//!
//! # Page lists
//!
//! Besides its object stacks, each cache keeps a list of up to
//! [`CACHE_PAGES`] (64) single pages for [`Heap::alloc_pages`] and
//! [`Heap::free_pages`] of one page, the requests a kernel makes most (page
//! tables, one-page buffers), like Linux's per-CPU page lists (`pcp`,
//! batch 63). It is refilled and flushed half a list at a time under one
//! acquisition of the page heap's lock. To the page heap the pages on a
//! list are one-page runs; a list page is marked in its metadata
//! (`kind::CACHED` in `buddy.rs`), so a second free of it panics as
//! a double free. Requests for more than one page, an alignment or a
//! physical limit go to the page heap. The free-page count of
//! [`HeapStats`](crate::HeapStats) includes the pages on the lists.
//!
//! [`Heap::alloc_pages`]: crate::Heap::alloc_pages
//! [`Heap::free_pages`]: crate::Heap::free_pages
//!
//! # Claiming a cache
//!
//! A cache is used by one context at a time, claimed with its `busy` flag:
//! an atomic compare-exchange, or, when [`Platform::NON_PREEMPTIVE`]
//! promises that only nested interrupt handlers can interleave, a plain
//! load and store. A
//! context that finds the flag set — an interrupt handler that interrupted
//! the allocator on the same CPU, or a task that was migrated after reading
//! its CPU id — does not wait: it takes the central path, which is correct
//! from any context. So the fast path never spins and is safe against
//! re-entry without masking interrupts.
//!
//! The claim is a guard, `Claimed`: the stacks can only be reached
//! through it, and dropping it releases the claim (also when a panic
//! unwinds through the allocator). A context on another CPU claims only
//! with a compare-exchange, and never the cache of a non-preemptive CPU,
//! whose owner's plain load and store a remote compare-exchange could
//! interleave with (`Claim::try_claim_from`). Where a drain cannot claim
//! a cache, it sets the cache's drain request instead, and the owner
//! drains on its next refill or flush (`Heap::drain_cpu`). The loom models
//! at the end of this file check both protocols, and an owner interrupted
//! inside its claim.
//!
//! # Storage
//!
//! The caches and their slot arrays are carved from managed memory at
//! [`init`](crate::Heap::init): `max_cpus × (size_of::<CpuCache>() +
//! SLOTS_PER_CPU × 8)` bytes, one page run. There is no fixed upper bound on
//! CPUs beyond what the caller asks for.

use crate::addr::VirtAddr;
use crate::buddy::PageHeap;
use crate::central::CentralList;
use crate::platform::{IrqOff, Platform};
use crate::size_class::{SizeClass, CLASSES, NUM_CLASSES};
use crate::sync::{compiler_fence, AtomicBool, AtomicPtr, AtomicU64, Ordering};

const R: Ordering = Ordering::Relaxed;

/// Bytes of objects one CPU caches per class at most (see the module docs).
pub const CACHE_BYTES_PER_CLASS: usize = 64 * 1024;
/// Fewest objects a stack holds, for the largest classes.
pub const CACHE_MIN_OBJECTS: usize = 8;
/// Most objects a stack holds, for the smallest classes.
pub const CACHE_MAX_OBJECTS: usize = 256;

const fn capacity_of(size: usize) -> usize {
    let n = CACHE_BYTES_PER_CLASS / size;
    if n < CACHE_MIN_OBJECTS {
        CACHE_MIN_OBJECTS
    } else if n > CACHE_MAX_OBJECTS {
        CACHE_MAX_OBJECTS
    } else {
        n & !1
    }
}

/// Single pages one CPU keeps for the page API (see "Page lists" in the
/// module docs); refill and flush move half of them.
pub const CACHE_PAGES: usize = 64;

/// Stacks per CPU: one per class, then the page list.
const STACKS: usize = NUM_CLASSES + 1;
/// The index of the page list among a CPU's stacks.
const PAGE_STACK: usize = NUM_CLASSES;

/// Per stack: (capacity, offset of its slots in the CPU's slot array).
static LAYOUT: [(u32, u32); STACKS] = {
    let mut t = [(0u32, 0u32); STACKS];
    let mut i = 0;
    let mut off = 0;
    while i < STACKS {
        let cap = if i == PAGE_STACK {
            CACHE_PAGES
        } else {
            capacity_of(CLASSES[i].size as usize)
        };
        t[i] = (cap as u32, off as u32);
        off += cap;
        i += 1;
    }
    t
};

/// Slots (cached object and page addresses) per CPU, all stacks.
pub const SLOTS_PER_CPU: usize = {
    let mut i = 0;
    let mut n = CACHE_PAGES;
    while i < NUM_CLASSES {
        n += capacity_of(CLASSES[i].size as usize);
        i += 1;
    }
    n
};

/// Bytes of objects one CPU can cache, all classes full.
pub const CACHE_BYTES_PER_CPU: usize = {
    let mut i = 0;
    let mut n = 0;
    while i < NUM_CLASSES {
        n += capacity_of(CLASSES[i].size as usize) * CLASSES[i].size as usize;
        i += 1;
    }
    n
};

/// The flag that gives one context at a time a CPU cache; see
/// "Claiming a cache" in the [module docs](self).
pub(crate) struct Claim {
    busy: AtomicBool,
}

impl Claim {
    pub(crate) fn new() -> Self {
        Claim {
            busy: AtomicBool::new(false),
        }
    }

    /// Takes the claim; `false` if another context holds it. Never waits.
    #[inline(always)]
    pub(crate) fn try_claim<P: Platform>(&self) -> bool {
        if P::NON_PREEMPTIVE {
            // Only a nested interrupt handler can run between the load and
            // the store, and it releases the flag before we resume. Only
            // this CPU's contexts take the claim this way: a context on
            // another CPU never claims a non-preemptive CPU's cache (see
            // `Heap::drain_cpu`), except under `Heap::drain_stopped_cpu`'s
            // contract. Acquire still pairs with that drainer's release.
            if self.busy.load(Ordering::Acquire) {
                return false;
            }
            self.busy.store(true, R);
            compiler_fence(Ordering::SeqCst);
            true
        } else {
            self.try_claim_atomic()
        }
    }

    /// Takes the claim for a context on the cache's own CPU (`same_cpu`)
    /// or on another CPU. A context on another CPU takes it only with a
    /// compare-exchange, and never on a non-preemptive platform: there the
    /// owner claims with a plain load and store, which a compare-exchange
    /// elsewhere could interleave with (both would hold the claim).
    #[inline(always)]
    pub(crate) fn try_claim_from<P: Platform>(&self, same_cpu: bool) -> bool {
        if same_cpu {
            self.try_claim::<P>()
        } else if P::NON_PREEMPTIVE {
            false
        } else {
            self.try_claim_atomic()
        }
    }

    /// Takes the claim with an atomic read-modify-write whatever the
    /// platform says. A failed attempt writes nothing.
    #[inline(always)]
    pub(crate) fn try_claim_atomic(&self) -> bool {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives the claim up; what the holder wrote happens-before the next
    /// holder's reads.
    #[inline(always)]
    pub(crate) fn release(&self) {
        compiler_fence(Ordering::SeqCst);
        self.busy.store(false, Ordering::Release);
    }
}

/// Counters of one CPU's cache, for [`HeapStats`](crate::HeapStats).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Objects in the cache.
    pub cached_objects: u64,
    /// Bytes of those objects.
    pub cached_bytes: u64,
    /// Single pages on the CPU's page list (see "Page lists" in the
    /// [`cpu_cache`](crate::cpu_cache) docs).
    pub cached_pages: u64,
    /// Allocations and frees (objects and single pages) served by the
    /// cache without the central list or the page heap.
    pub hits: u64,
    /// Batches taken from central lists (or, for pages, the page heap).
    pub refills: u64,
    /// Batches given back to central lists (or the page heap).
    pub flushes: u64,
    /// Operations that found the cache claimed and took the central path.
    pub fallbacks: u64,
}

/// One class's stack in a CPU's cache, as a view of the cache's three
/// arrays: `bottom..top` hold objects, `top..end` are free slots.
/// Pointers rather than a length and a capacity, so a pop or a push is one
/// load, one comparison and one store besides the slot itself; three
/// arrays rather than an array of structs, so that the class index scales
/// into every address directly.
struct Stack<'a> {
    /// The next free slot (atomic only so statistics can read it).
    top: &'a AtomicPtr<VirtAddr>,
    /// The first slot.
    bottom: *mut VirtAddr,
    /// One past the last slot: `bottom + capacity` (an even capacity).
    end: *mut VirtAddr,
}

impl Stack<'_> {
    /// Objects on the stack.
    #[inline(always)]
    fn len(&self) -> usize {
        // SAFETY: `top` always lies in `bottom..=end`, one slot array.
        unsafe { self.top.load(R).offset_from(self.bottom) as usize }
    }

    /// Slots of the stack.
    #[inline(always)]
    fn cap(&self) -> usize {
        // SAFETY: `end` is `bottom` plus the capacity, in one slot array.
        unsafe { self.end.offset_from(self.bottom) as usize }
    }

    /// Sets the number of objects on the stack.
    #[inline(always)]
    fn set_len(&self, n: usize) {
        debug_assert!(n <= self.cap());
        // SAFETY: n <= capacity: within the slot array or one past it.
        self.top.store(unsafe { self.bottom.add(n) }, R)
    }
}

/// One CPU's cache; see the [module docs](self).
#[repr(C, align(64))]
pub(crate) struct CpuCache {
    claim: Claim,
    /// Set by a context that wanted to drain this cache and could not
    /// claim it (see [`Heap::drain_cpu`](crate::Heap::drain_cpu)); the
    /// owner drains on its next refill or flush.
    drain_request: AtomicBool,
    /// Per class: the next free slot of its stack ([`Stack::top`]).
    tops: [AtomicPtr<VirtAddr>; STACKS],
    /// Per class: its first slot.
    bottoms: [*mut VirtAddr; STACKS],
    /// Per class: one past its last slot.
    ends: [*mut VirtAddr; STACKS],
    /// Allocations served from the stacks (frees served are derived in
    /// `stats` from the lengths and the batch counts, to keep a counter off
    /// the free path).
    pops: AtomicU64,
    refills: AtomicU64,
    refilled: AtomicU64,
    flushes: AtomicU64,
    flushed: AtomicU64,
    fallbacks: AtomicU64,
}

/// Bytes of one CPU's cache and its slot array.
pub(crate) const CPU_BYTES: usize =
    core::mem::size_of::<CpuCache>() + SLOTS_PER_CPU * core::mem::size_of::<VirtAddr>();

/// Adds to a counter that only the claim holder writes.
#[inline(always)]
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(R) + n, R);
}

impl CpuCache {
    /// Initialises the cache at `at`, with its slots right after it.
    ///
    /// # Safety
    /// `at` is valid for writes of `CPU_BYTES` bytes, 64-byte aligned, and
    /// stays reserved for this cache for the heap's lifetime.
    pub(crate) unsafe fn init(at: *mut CpuCache) {
        // SAFETY: the caller guarantees `at` is valid for the cache and its
        // slot array; the slots start right after the struct.
        let slots = unsafe { at.add(1).cast::<VirtAddr>() };
        let bottoms: [*mut VirtAddr; STACKS] = core::array::from_fn(|i| {
            // SAFETY: LAYOUT's offsets stay within SLOTS_PER_CPU.
            unsafe { slots.add(LAYOUT[i].1 as usize) }
        });
        let ends = core::array::from_fn(|i| {
            // SAFETY: LAYOUT's offsets plus capacities stay within
            // SLOTS_PER_CPU.
            unsafe { bottoms[i].add(LAYOUT[i].0 as usize) }
        });
        let tops = core::array::from_fn(|i| AtomicPtr::new(bottoms[i]));
        // SAFETY: as above.
        unsafe {
            at.write(CpuCache {
                claim: Claim::new(),
                drain_request: AtomicBool::new(false),
                tops,
                bottoms,
                ends,
                pops: AtomicU64::new(0),
                refills: AtomicU64::new(0),
                refilled: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
            })
        }
    }

    /// Claims the cache for the calling context; `None` if another holds
    /// it. Never waits.
    #[inline(always)]
    pub(crate) fn claim<P: Platform>(&self) -> Option<Claimed<'_>> {
        // Not `then_some`: a `Claimed` made and dropped on failure would
        // release the holder's claim.
        if self.claim.try_claim::<P>() {
            Some(Claimed { cache: self })
        } else {
            None
        }
    }

    /// Claims the cache from a context on its own CPU (`same_cpu`) or on
    /// another CPU; see [`Claim::try_claim_from`].
    pub(crate) fn claim_from<P: Platform>(&self, same_cpu: bool) -> Option<Claimed<'_>> {
        if self.claim.try_claim_from::<P>(same_cpu) {
            Some(Claimed { cache: self })
        } else {
            None
        }
    }

    /// Claims the cache with an atomic compare-exchange, whatever the
    /// platform: only for a CPU known to be stopped (see
    /// [`Heap::drain_stopped_cpu`](crate::Heap::drain_stopped_cpu)).
    pub(crate) fn claim_atomic(&self) -> Option<Claimed<'_>> {
        if self.claim.try_claim_atomic() {
            Some(Claimed { cache: self })
        } else {
            None
        }
    }

    /// Asks the owner to drain the cache on its next refill or flush.
    pub(crate) fn request_drain(&self) {
        self.drain_request.store(true, Ordering::Release);
    }

    /// Counts an operation that found the cache claimed.
    #[cold]
    pub(crate) fn count_fallback(&self) {
        self.fallbacks.fetch_add(1, R);
    }

    #[inline(always)]
    fn stack(&self, class: SizeClass) -> Stack<'_> {
        self.stack_at(class.index())
    }

    /// Stack `i`: a class's, or the page list at [`PAGE_STACK`].
    #[inline(always)]
    fn stack_at(&self, i: usize) -> Stack<'_> {
        debug_assert!(i < STACKS);
        // SAFETY: callers pass a SizeClass index (below NUM_CLASSES) or
        // PAGE_STACK: below STACKS, the arrays' length.
        unsafe {
            Stack {
                top: self.tops.get_unchecked(i),
                bottom: *self.bottoms.get_unchecked(i),
                end: *self.ends.get_unchecked(i),
            }
        }
    }

    #[inline(always)]
    fn pop_at(&self, i: usize) -> Option<VirtAddr> {
        let st = self.stack_at(i);
        let top = st.top.load(R);
        if top == st.bottom {
            return None;
        }
        // SAFETY: top > bottom, so top - 1 is a slot holding an object; the
        // claim gives exclusive access to the slots.
        let top = unsafe { top.sub(1) };
        st.top.store(top, R);
        add(&self.pops, 1);
        // SAFETY: as above.
        Some(unsafe { top.read() })
    }

    #[inline(always)]
    fn push_at(&self, i: usize, obj: VirtAddr) -> bool {
        let st = self.stack_at(i);
        let top = st.top.load(R);
        if top == st.end {
            return false;
        }
        // SAFETY: top < end is a free slot; exclusive access through the
        // claim.
        unsafe {
            top.write(obj);
            st.top.store(top.add(1), R);
        }
        true
    }

    /// Refills empty stack `i` with half a stack from `take` (which fills
    /// the slots it is given and returns how many) and pops one.
    fn refill_at(&self, i: usize, take: impl FnOnce(&mut [VirtAddr]) -> usize) -> Option<VirtAddr> {
        let st = self.stack_at(i);
        debug_assert_eq!(st.len(), 0);
        // SAFETY: the first cap/2 slots are valid and exclusively ours (the
        // claim); VirtAddr is a plain integer, any bits valid.
        let slots = unsafe { core::slice::from_raw_parts_mut(st.bottom, st.cap() / 2) };
        let got = take(slots);
        add(&self.refills, 1);
        add(&self.refilled, got as u64);
        if got == 0 {
            return None;
        }
        st.set_len(got - 1);
        add(&self.pops, 1);
        Some(slots[got - 1])
    }

    /// Hands the top half of full stack `i` to `give`, then pushes `obj`.
    fn flush_at(&self, i: usize, obj: VirtAddr, give: impl FnOnce(&[VirtAddr])) {
        let st = self.stack_at(i);
        let cap = st.cap();
        let keep = cap / 2;
        // SAFETY: slots keep..cap hold objects; exclusive through the claim.
        let batch = unsafe { core::slice::from_raw_parts(st.bottom.add(keep), cap - keep) };
        give(batch);
        add(&self.flushes, 1);
        add(&self.flushed, batch.len() as u64);
        // SAFETY: keep < cap.
        unsafe { st.bottom.add(keep).write(obj) };
        st.set_len(keep + 1);
    }

    /// Hands everything on stack `i` to `give` and empties it.
    fn drain_at(&self, i: usize, give: impl FnOnce(&[VirtAddr])) {
        let st = self.stack_at(i);
        let n = st.len();
        if n == 0 {
            return;
        }
        // SAFETY: slots 0..n hold objects; exclusive through the claim.
        give(unsafe { core::slice::from_raw_parts(st.bottom, n) });
        st.set_len(0);
        add(&self.flushes, 1);
        add(&self.flushed, n as u64);
    }

    /// A snapshot of the counters (racy while the CPU allocates).
    pub(crate) fn stats(&self) -> CpuStats {
        let mut s = CpuStats {
            refills: self.refills.load(R),
            flushes: self.flushes.load(R),
            fallbacks: self.fallbacks.load(R),
            ..CpuStats::default()
        };
        for (i, c) in CLASSES.iter().enumerate() {
            let n = self.stack(SizeClass::new(i)).len() as u64;
            s.cached_objects += n;
            s.cached_bytes += n * c.size as u64;
        }
        s.cached_pages = self.stack_at(PAGE_STACK).len() as u64;
        // Objects and pages in = refilled + pushed; out = popped + flushed;
        // the difference is what is cached now. So pushed (frees served) is:
        let pops = self.pops.load(R);
        let cached = s.cached_objects + s.cached_pages;
        let pushes = (cached + pops + self.flushed.load(R)).saturating_sub(self.refilled.load(R));
        s.hits = pops + pushes;
        s
    }
}

/// A claimed CPU cache: the only way to reach its stacks, so they are
/// used by one context at a time by construction. Dropping it releases the
/// claim, also when a panic unwinds through the allocator.
pub(crate) struct Claimed<'a> {
    cache: &'a CpuCache,
}

impl Drop for Claimed<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.cache.claim.release();
    }
}

impl core::ops::Deref for Claimed<'_> {
    type Target = CpuCache;
    #[inline(always)]
    fn deref(&self) -> &CpuCache {
        self.cache
    }
}

impl Claimed<'_> {
    /// Whether a drain was asked for since the last one, clearing the
    /// request.
    #[inline]
    pub(crate) fn take_drain_request(&self) -> bool {
        self.cache.drain_request.load(R) && self.cache.drain_request.swap(false, Ordering::Acquire)
    }

    /// Pops a cached object of `class`.
    #[inline(always)]
    pub(crate) fn pop(&self, class: SizeClass) -> Option<VirtAddr> {
        self.pop_at(class.index())
    }

    /// Pushes a freed object; `false` if the stack is full. Caller holds
    #[inline(always)]
    pub(crate) fn push(&self, class: SizeClass, obj: VirtAddr) -> bool {
        self.push_at(class.index(), obj)
    }

    /// Pops a page from the page list.
    #[inline(always)]
    pub(crate) fn pop_page(&self) -> Option<VirtAddr> {
        self.pop_at(PAGE_STACK)
    }

    /// Pushes a freed page on the page list; `false` if it is full.
    #[inline(always)]
    pub(crate) fn push_page(&self, page: VirtAddr) -> bool {
        self.push_at(PAGE_STACK, page)
    }

    /// Refills an empty stack with one batch (half the stack) from its
    /// central list and pops one object.
    pub(crate) fn refill(
        &self,
        irq: IrqOff<'_>,
        central: &CentralList,
        pages: &PageHeap,
        class: SizeClass,
        poison: bool,
    ) -> Option<VirtAddr> {
        self.refill_at(class.index(), |slots| {
            central.take(irq, pages, class, slots, poison)
        })
    }

    /// Refills the empty page list with half a list of single pages from
    /// the page heap and pops one.
    pub(crate) fn refill_pages(&self, irq: IrqOff<'_>, pages: &PageHeap) -> Option<VirtAddr> {
        self.refill_at(PAGE_STACK, |slots| pages.alloc_singles(irq, slots))
    }

    /// Flushes the top half of a full stack to the central list, then
    /// pushes `obj`.
    pub(crate) fn flush_and_push(
        &self,
        irq: IrqOff<'_>,
        central: &CentralList,
        pages: &PageHeap,
        class: SizeClass,
        obj: VirtAddr,
    ) {
        self.flush_at(class.index(), obj, |batch| {
            central.give(irq, pages, class, batch)
        })
    }

    /// Gives the top half of the full page list back to the page heap, then
    /// pushes `page`.
    pub(crate) fn flush_pages_and_push(&self, irq: IrqOff<'_>, pages: &PageHeap, page: VirtAddr) {
        self.flush_at(PAGE_STACK, page, |batch| pages.free_singles(irq, batch))
    }

    /// Gives every cached object and page back.
    pub(crate) fn drain(&self, irq: IrqOff<'_>, centrals: &[CentralList], pages: &PageHeap) {
        for (i, central) in centrals.iter().enumerate() {
            self.drain_at(i, |objs| central.give(irq, pages, SizeClass::new(i), objs));
        }
        self.drain_at(PAGE_STACK, |objs| pages.free_singles(irq, objs));
    }

    /// Whether `obj` is on the stack of `class`.
    pub(crate) fn contains(&self, class: SizeClass, obj: VirtAddr) -> bool {
        let st = self.stack(class);
        // SAFETY: slots 0..len hold objects; exclusive through the claim.
        let objs = unsafe { core::slice::from_raw_parts(st.bottom, st.len()) };
        objs.contains(&obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_are_bounded_in_bytes() {
        for (i, c) in CLASSES.iter().enumerate() {
            let cap = LAYOUT[i].0 as usize;
            assert!((CACHE_MIN_OBJECTS..=CACHE_MAX_OBJECTS).contains(&cap) && cap % 2 == 0);
            assert!(
                cap * c.size as usize
                    <= CACHE_BYTES_PER_CLASS.max(CACHE_MIN_OBJECTS * c.size as usize)
            );
        }
        const { assert!(CACHE_BYTES_PER_CPU <= 9 << 19) };
    }
}

/// Model checks of the claim protocol with `loom`: every interleaving of
/// contexts claiming one cache, on the real [`Claim`] code (built against
/// loom's atomics under `--cfg loom`). Run by `scripts/loom.sh`.
#[cfg(all(test, loom))]
mod loom_models {
    extern crate std;
    use super::Claim;
    use crate::platform::Platform;
    use crate::sync::Ordering;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use std::vec::Vec;

    struct Preemptive;
    impl Platform for Preemptive {
        type IrqGuard = ();
        fn cpu_id() -> usize {
            0
        }
        fn disable_interrupts() {}
    }

    /// The stack a claim protects: loom reports any unsynchronised access.
    struct Cache {
        claim: Claim,
        len: UnsafeCell<u32>,
    }

    struct NonPreemptive;
    impl Platform for NonPreemptive {
        type IrqGuard = ();
        const NON_PREEMPTIVE: bool = true;
        fn cpu_id() -> usize {
            0
        }
        fn disable_interrupts() {}
    }

    /// A cache with its drain request, as `CpuCache` has them.
    struct Requested {
        claim: Claim,
        request: crate::sync::AtomicBool,
        len: UnsafeCell<u32>,
    }

    impl Requested {
        fn new(len: u32) -> Self {
            Requested {
                claim: Claim::new(),
                request: crate::sync::AtomicBool::new(false),
                len: UnsafeCell::new(len),
            }
        }

        /// One operation of the cache's own CPU: claim; drain if a drain
        /// was asked for (as `Heap` does on a refill or flush), else push
        /// one object; release. `interrupt` runs while the claim is held,
        /// as an interrupt handler on the same CPU would. `false` if the
        /// claim was taken (the central path).
        fn own_op<P: Platform>(&self, interrupt: impl FnOnce()) -> bool {
            if !self.claim.try_claim_from::<P>(true) {
                return false;
            }
            interrupt();
            let drain =
                self.request.load(Ordering::Relaxed) && self.request.swap(false, Ordering::Acquire);
            // SAFETY: claimed; loom checks that the claim excludes.
            self.len
                .with_mut(|n| unsafe { *n = if drain { 0 } else { *n + 1 } });
            self.claim.release();
            true
        }

        /// `Heap::drain_cpu` from a context on another CPU (`same_cpu`
        /// false) or an interrupt on this one: drain if the cache can be
        /// claimed from here, else ask the owner. Returns whether it
        /// drained.
        fn drain<P: Platform>(&self, same_cpu: bool) -> bool {
            if self.claim.try_claim_from::<P>(same_cpu) {
                // SAFETY: claimed.
                self.len.with_mut(|n| unsafe { *n = 0 });
                self.claim.release();
                true
            } else {
                self.request.store(true, Ordering::Release);
                false
            }
        }
    }

    /// A remote drain of a non-preemptive CPU's cache never claims it (the
    /// owner's plain load and store could interleave with its
    /// compare-exchange); it asks, and the owner's next operation drains.
    /// The request is never lost, and no access to the stack races.
    #[test]
    fn non_preemptive_owner_against_remote_drainer() {
        model("non_preemptive_owner_against_remote_drainer", || {
            let cache = Arc::new(Requested::new(3));
            let owner = {
                let cache = cache.clone();
                loom::thread::spawn(move || {
                    for _ in 0..2 {
                        assert!(cache.own_op::<NonPreemptive>(|| {}), "nobody else claims");
                    }
                })
            };
            assert!(!cache.drain::<NonPreemptive>(false));
            owner.join().unwrap();
            assert!(cache.own_op::<NonPreemptive>(|| {}));
            assert!(
                !cache.request.load(Ordering::Relaxed),
                "the request was lost"
            );
            // SAFETY: every context is done.
            let n = cache.len.with(|n| unsafe { *n });
            assert!(n <= 2, "the drain never happened: {n}");
        });
    }

    /// The owner is interrupted inside its claim by a handler that
    /// allocates (finds the claim held: the central path) and drains its
    /// own CPU (asks instead of spinning), while, on a preemptive
    /// platform, a remote drain races both. Nothing waits, no access
    /// races, and the asked-for drain happens on the owner's next
    /// operation.
    fn interrupted_owner<P: Platform>(remote: bool) {
        let cache = Arc::new(Requested::new(5));
        let drainer = remote.then(|| {
            let cache = cache.clone();
            loom::thread::spawn(move || cache.drain::<P>(false))
        });
        let c = cache.clone();
        let claimed = cache.own_op::<P>(move || {
            assert!(!c.own_op::<P>(|| {}), "the handler got the held claim");
            assert!(!c.drain::<P>(true), "the handler drained a held cache");
        });
        if let Some(d) = drainer {
            d.join().unwrap();
        }
        // The remote drain, if it won the race for the claim, made the
        // owner's first operation take the central path; otherwise the
        // handler (and maybe the remote drain) asked, and the owner's next
        // operation drains.
        assert!(cache.own_op::<P>(|| {}));
        assert!(!cache.request.load(Ordering::Relaxed), "a request was lost");
        // SAFETY: every context is done.
        let n = cache.len.with(|n| unsafe { *n });
        assert!(n <= 1, "no drain happened (claimed first: {claimed}): {n}");
    }

    #[test]
    fn interrupted_non_preemptive_owner() {
        model("interrupted_non_preemptive_owner", || {
            interrupted_owner::<NonPreemptive>(false)
        });
    }

    #[test]
    fn interrupted_preemptive_owner_and_remote_drain() {
        model("interrupted_preemptive_owner_and_remote_drain", || {
            interrupted_owner::<Preemptive>(true)
        });
    }

    /// Runs `f` under loom and prints how many interleavings it explored.
    fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc as StdArc;
        let runs = StdArc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        loom::model(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            f()
        });
        std::println!(
            "loom: {name}: {} interleavings checked",
            runs.load(Ordering::Relaxed)
        );
    }

    /// Three contexts (a task, one migrated onto the same CPU id, a drain) race for
    /// one cache: at most one holds it at a time, the holder's writes are
    /// seen by the next holder, and a loser falls back without waiting.
    #[test]
    fn claims_exclude_and_hand_over() {
        model("claims_exclude_and_hand_over", || {
            let cache = Arc::new(Cache {
                claim: Claim::new(),
                len: UnsafeCell::new(0),
            });
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    let cache = cache.clone();
                    loom::thread::spawn(move || {
                        if cache.claim.try_claim::<Preemptive>() {
                            cache.len.with_mut(|n| {
                                // SAFETY: the claim gives exclusive access;
                                // loom checks that it really does.
                                unsafe { *n += 1 }
                            });
                            cache.claim.release();
                            true
                        } else {
                            false
                        }
                    })
                })
                .collect();
            let won: u32 = threads.into_iter().map(|t| t.join().unwrap() as u32).sum();
            assert!(won >= 1, "with no holder left, a claim cannot fail forever");
            assert!(cache.claim.try_claim_atomic());
            // SAFETY: claimed; every earlier holder released (joined).
            let n = cache.len.with(|n| unsafe { *n });
            assert_eq!(n, won);
            cache.claim.release();
        });
    }

    /// A remote drain (atomic compare-exchange) against the owner's claims: the drain
    /// empties the stack only while it holds the claim.
    #[test]
    fn remote_drain_against_owner() {
        model("remote_drain_against_owner", || {
            let cache = Arc::new(Cache {
                claim: Claim::new(),
                len: UnsafeCell::new(3),
            });
            let owner = {
                let cache = cache.clone();
                loom::thread::spawn(move || {
                    for _ in 0..2 {
                        if cache.claim.try_claim::<Preemptive>() {
                            // SAFETY: claimed.
                            cache.len.with_mut(|n| unsafe { *n += 1 });
                            cache.claim.release();
                        }
                    }
                })
            };
            while !cache.claim.try_claim_atomic() {
                loom::thread::yield_now();
            }
            // SAFETY: claimed.
            cache.len.with_mut(|n| unsafe { *n = 0 });
            cache.claim.release();
            owner.join().unwrap();
            assert!(cache.claim.try_claim_atomic());
            // SAFETY: claimed, owner joined.
            let n = cache.len.with(|n| unsafe { *n });
            assert!(n <= 2, "the drain lost no update it did not see: {n}");
        });
    }
}
