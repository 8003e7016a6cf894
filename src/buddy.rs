//! The buddy page heap: whole pages over caller-supplied physical regions.
//!
//! # What it owns
//!
//! Every managed page. A region is a physical range the caller hands over
//! (from the e820/UEFI/PVH memory map or a device tree), trimmed inward to
//! page boundaries. Its per-page metadata (`PageMeta`, 16 bytes a page,
//! 0.39 % of the region) is carved from the top of the region itself, so
//! the heap needs no memory of its own beyond a fixed table of
//! [`MAX_REGIONS`] region descriptors. A region larger than `2^MAX_ORDER`
//! pages (256 GiB) is split into several descriptors.
//!
//! Free pages form blocks of `2^order` pages, each aligned to its size in
//! *physical* frame numbers (so the buddy of block `pfn` is
//! `pfn ^ (1 << order)`, and a block of order `k` satisfies any alignment up
//! to `2^k` pages). Each region keeps one free list per order and a bit mask
//! of the non-empty lists: the smallest fitting order is one
//! `trailing_zeros`.
//!
//! ```text
//!  region: [ managed pages ....................................][meta]
//!            │                                                    │
//!            │  free lists per order (doubly linked through       │ one PageMeta
//!            │  PageMeta.a / .b, region-local page indices)       │ per managed page
//!  order 0 ● │ ─► [p7]                                            │
//!  order 3 ● │ ─► [p8 ........ p15] ─► [p40 ....... p47]          │
//!  order 5 ○ │                                                    │
//!  mask = 0b0..01001                                              │
//! ```
//!
//! # Invariants (all under the page heap lock)
//!
//! * A page's `PageMeta` says `FREE` exactly when the page is the first
//!   page of a free block on a free list; its `order` is the block's order. Interior pages of
//!   free blocks and of allocated page runs say `UNUSED`, so a stale tag can
//!   never make a buddy look free. Checking whether a buddy is free is one
//!   metadata load.
//! * The first page of an allocated run says `RUN` (or `INTERNAL` for the
//!   heap's own storage) and records the run's length, so a free can be
//!   checked against it. Span pages are tagged by the span layer.
//! * Every free, shrink and grow of a run checks, under the lock and before
//!   it changes anything, that the head still says `RUN` or `INTERNAL` with
//!   the length the caller names (a free of a span: that the head is a
//!   span's first page), and panics naming the address otherwise. The
//!   callers' own checks take no lock, so two CPUs freeing one run can both
//!   pass them; the one that takes the lock second finds the head `UNUSED`.
//! * A request with a physical limit is served from a free block of a
//!   fitting order whose first `n` pages end at or below the limit, or from
//!   adjacent smaller free blocks that together hold `n` pages ending
//!   there (the same assembly as an unlimited request that no single block
//!   serves), both honouring the alignment.
//! * A run of any length `n` costs exactly `n` pages: a request is served
//!   from a block of order `ceil(log2 n)` (or the alignment's order if
//!   larger), and the surplus goes straight back as aligned blocks. The
//!   next run whose length is not a power of two starts in that surplus
//!   when the pages there are free (next fit), so runs of one odd size
//!   pack back to back rather than each stranding its surplus.
//!
//! # Deferred coalescing
//!
//! Merging a freed block with its buddies, and splitting it again for the
//! next request of the same size, costs a list operation per order. A
//! kernel that frees and allocates runs of one size in turn (a driver's
//! buffers, a task's stack) would pay that twice per cycle. So the last
//! block freed at each order up to [`PARK_MAX_ORDER`] is *parked*: counted
//! as free, tagged `UNUSED` (so no buddy check merges with it), and handed
//! out first to the next request of that order. Parking another block of
//! the same order merges the previous one; any search that must see all
//! free memory (no fitting block in the lists, a physical limit, growing a
//! run in place, an assembled run) merges all of them first. At most one
//! block per order is parked, 8 MiB in all, plus the last freed run whose
//! length is not a power of two (under 4 MiB), which the next request of
//! any length takes first: whole, its head (the rest stays parked), or
//! grown in place into the free pages after it. A run freed right before
//! or after the parked run joins it, so a kernel that allocates and frees
//! runs of varying sizes one at a time works on one extent, without a list
//! operation.
//!
//! # Concurrency
//!
//! One spin lock guards the free lists of all regions. Region descriptors
//! are written once, under that lock, before the region count is published
//! with `Release`; lookups from a pointer (the free path) read them without
//! the lock. All metadata fields are atomics accessed with `Relaxed`
//! ordering: writers hold the lock that owns the page (this one, or a
//! span's central-list lock); lock-free readers only validate pointers.

use crate::addr::{Pfn, PhysAddr, PhysOffset, PhysRange, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::error::HeapError;
use crate::platform::IrqOff;
use crate::sync::CacheAligned;
use crate::sync::IrqLock;
use core::sync::atomic::{AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use spin::mutex::SpinMutexGuard;
use static_assertions::const_assert_eq;

/// The largest block order: `2^26` pages (256 GiB) is one block.
///
/// A region descriptor covers at most this many pages, so the largest
/// aligned block of any region is one block (a kernel allocating a 64 MiB
/// framebuffer gets one). Larger regions are split into several
/// descriptors.
pub const MAX_ORDER: u32 = 26;
/// Number of block orders, `0..=MAX_ORDER`.
pub const ORDERS: usize = MAX_ORDER as usize + 1;
/// How many region descriptors the heap holds. Memory maps of real machines
/// have a handful of usable ranges; 63 keeps a region index in 6 bits of a
/// page id.
pub const MAX_REGIONS: usize = 63;

const REGION_PAGES_MAX: u64 = 1 << MAX_ORDER;
/// Orders up to this (4 MiB blocks) keep their last freed block parked
/// instead of merging it at once; see "Deferred coalescing".
pub const PARK_MAX_ORDER: u32 = 10;
const PARKED: usize = PARK_MAX_ORDER as usize + 1;
pub(crate) const NIL: u32 = u32::MAX;

/// The kind of a page, in the low byte of [`PageMeta::tag`].
pub(crate) mod kind {
    /// Interior of a free block or of an allocated run.
    pub const UNUSED: u8 = 0;
    /// First page of a free block; the high byte is the order.
    pub const FREE: u8 = 1;
    /// A page of a span: `SPAN_HEAD | d` on the page `d` pages after the
    /// span's first page (`d` < 128, in [`SPAN_DISTANCE`]); the high byte is
    /// the size class. So `tag ^ (SPAN_HEAD | class << 8)` is the distance
    /// to the head on a page of a span of `class`, and 128 or more on any
    /// other page: the free check's single comparison (see `span.rs`).
    pub const SPAN_HEAD: u8 = 0x80;
    /// The distance bits of a span page's kind.
    pub const SPAN_DISTANCE: u8 = 0x7f;
    /// Whether `kind` is a page of a span.
    #[inline(always)]
    pub const fn is_span(kind: u8) -> bool {
        kind & SPAN_HEAD != 0
    }
    /// First page of a run allocated by a caller; `a` is its length.
    pub const RUN: u8 = 4;
    /// First page of a run the heap uses itself; `a` is its length.
    pub const INTERNAL: u8 = 5;
    /// A one-page run on a CPU's page list: free to its callers, allocated
    /// to the page heap. A page turns from `RUN` to `CACHED` (its free)
    /// and back (its allocation from the list) only by compare-exchange,
    /// so a second free of it, through any path, fails.
    pub const CACHED: u8 = 6;
}

/// Per-page metadata, out of band (like Linux's `struct page`).
///
/// Meaning of the fields by kind (see [`kind`]):
///
/// | kind        | tag high byte | inuse / carved / free      | a          | b        |
/// |-------------|---------------|----------------------------|------------|----------|
/// | `FREE`      | order         | –                          | prev       | next     |
/// | `SPAN_HEAD` | class         | objects out / carved / head of free list | prev | next |
/// | `SPAN_HEAD + d` | class     | –                          | –          | –        |
/// | `RUN`, `INTERNAL` | –       | –                          | page count | 0        |
/// | `CACHED`    | –             | –                          | 1          | 0        |
#[repr(C, align(16))]
pub(crate) struct PageMeta {
    /// `kind | (class_or_order << 8)`.
    pub(crate) tag: AtomicU16,
    pub(crate) inuse: AtomicU16,
    pub(crate) carved: AtomicU16,
    pub(crate) free: AtomicU16,
    pub(crate) a: AtomicU32,
    pub(crate) b: AtomicU32,
}
const_assert_eq!(core::mem::size_of::<PageMeta>(), 16);

const R: Ordering = Ordering::Relaxed;

impl PageMeta {
    #[inline(always)]
    pub(crate) fn tag(&self) -> u16 {
        self.tag.load(R)
    }
    #[inline(always)]
    pub(crate) fn kind(&self) -> u8 {
        self.tag.load(R) as u8
    }
    #[inline(always)]
    pub(crate) fn set_tag(&self, kind: u8, high: u8) {
        self.tag.store(kind as u16 | (high as u16) << 8, R)
    }
    /// Changes the tag from `from` to `to` (both with a high byte of 0) in
    /// one compare-exchange; `false` if it was not `from`.
    #[inline]
    pub(crate) fn change_kind(&self, from: u8, to: u8) -> bool {
        self.tag
            .compare_exchange(from as u16, to as u16, Ordering::AcqRel, R)
            .is_ok()
    }
}

/// A page identified across regions: region index in the top 6 bits,
/// page index within the region in the low 26. Links of the central lists.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(crate) struct PageId(pub(crate) u32);

impl PageId {
    pub(crate) const NIL: PageId = PageId(NIL);
    #[inline(always)]
    fn new(region: usize, index: u64) -> Self {
        PageId(((region as u32) << MAX_ORDER) | index as u32)
    }
    #[inline(always)]
    pub(crate) fn is_nil(self) -> bool {
        self.0 == NIL
    }
    #[inline(always)]
    fn region(self) -> usize {
        (self.0 >> MAX_ORDER) as usize
    }
    #[inline(always)]
    fn index(self) -> u64 {
        (self.0 & ((1 << MAX_ORDER) - 1)) as u64
    }
}

/// A region descriptor, readable without the lock once published.
struct RegionSlot {
    /// First managed frame.
    base: AtomicU64,
    /// Its virtual page number (`base` through the phys→virt offset): the
    /// lock-free lookup of a pointer keys on this.
    vbase: AtomicU64,
    /// Managed pages (the metadata pages above them excluded).
    pages: AtomicU64,
    /// `pages` entries.
    meta: AtomicPtr<PageMeta>,
    /// The range this descriptor covers as the caller gave it (for overlap
    /// checks and reports).
    raw_start: AtomicU64,
    raw_end: AtomicU64,
}

impl RegionSlot {
    /// The index of virtual page `vpn` in the region, if the descriptor is
    /// published and holds it. Takes no lock.
    #[inline(always)]
    fn index_of(&self, vpn: u64) -> Option<u64> {
        // Acquire: pairs with the Release that publishes the descriptor, so
        // `vbase` and `meta` are seen too.
        let pages = self.pages.load(Ordering::Acquire);
        let idx = vpn.wrapping_sub(self.vbase.load(R));
        (idx < pages).then_some(idx)
    }

    /// The metadata of page `idx`, which [`index_of`](Self::index_of)
    /// returned.
    #[inline(always)]
    fn meta_at(&self, idx: u64) -> &PageMeta {
        // SAFETY: `index_of` read the page count with Acquire (so `meta` is
        // visible) and idx < that count; a published slot's `meta` points at
        // `pages` initialised entries that live as long as the heap.
        unsafe {
            let meta = self.meta.load(R);
            core::hint::assert_unchecked(!meta.is_null());
            &*meta.add(idx as usize)
        }
    }

    #[allow(clippy::declare_interior_mutable_const)] // only to initialise the array
    const EMPTY: RegionSlot = RegionSlot {
        base: AtomicU64::new(0),
        vbase: AtomicU64::new(0),
        pages: AtomicU64::new(0),
        meta: AtomicPtr::new(core::ptr::null_mut()),
        raw_start: AtomicU64::new(0),
        raw_end: AtomicU64::new(0),
    };
}

/// A published region, by value: where its pages and metadata are.
#[derive(Copy, Clone)]
pub(crate) struct Region<'a> {
    pub(crate) index: usize,
    /// First managed frame.
    pub(crate) base: u64,
    /// Managed pages.
    pub(crate) pages: u64,
    meta: &'a [PageMeta],
}

impl<'a> Region<'a> {
    /// Metadata of the page at region-local index `i`.
    #[inline(always)]
    pub(crate) fn meta(&self, i: u64) -> &'a PageMeta {
        &self.meta[i as usize]
    }
    /// The id of the page at region-local index `i`.
    #[inline(always)]
    pub(crate) fn id(&self, i: u64) -> PageId {
        PageId::new(self.index, i)
    }
    /// The frame at region-local index `i`.
    #[inline(always)]
    pub(crate) fn pfn(&self, i: u64) -> Pfn {
        Pfn::new(self.base + i)
    }
}

/// Free lists of all regions; guarded by the page heap lock.
struct Lists {
    heads: [[u32; ORDERS]; MAX_REGIONS],
    masks: [u32; MAX_REGIONS],
    /// Free blocks per order, all regions.
    blocks: [u64; ORDERS],
    free_pages: u64,
    managed_pages: u64,
    meta_pages: u64,
    /// Highest `managed_pages - free_pages` seen.
    peak_used: u64,
    /// Live runs tagged `RUN`, and their pages.
    runs: u64,
    run_pages: u64,
    /// The parked block of each order (a `PageId`), or NIL.
    parked: [u32; PARKED],
    /// The parked run whose length is not a power of two: (`PageId` or
    /// NIL, length).
    parked_run: (u32, u32),
    /// Where the last run that was not a power of two ended (a `PageId`),
    /// or NIL: the next such run starts there if the pages are free.
    next_fit: u32,
}

/// A page run taken from the page heap.
#[derive(Copy, Clone)]
pub(crate) struct Run<'a> {
    pub(crate) region: Region<'a>,
    /// Region-local index of the first page.
    pub(crate) index: u64,
}

/// Counters of the page heap, for [`HeapStats`](crate::HeapStats).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Pages the heap manages (metadata excluded).
    pub managed_pages: u64,
    /// Pages of per-page metadata.
    pub metadata_pages: u64,
    /// Pages free in the buddy lists.
    pub free_pages: u64,
    /// Highest number of pages in use at once.
    pub peak_used_pages: u64,
    /// Free blocks per order.
    pub free_blocks: [u64; ORDERS],
    /// Region descriptors in use.
    pub regions: usize,
    /// Live page runs (large blocks and page API).
    pub runs: u64,
    /// Pages in those runs.
    pub run_pages: u64,
}

/// The buddy page heap; see the [module docs](self).
#[repr(C)]
pub struct PageHeap {
    /// Read on every free: kept off the lock's cache lines.
    offset: AtomicUsize,
    count: AtomicUsize,
    slots: [RegionSlot; MAX_REGIONS],
    lists: CacheAligned<IrqLock<Lists>>,
}

/// `ceil(log2(n))` for `n >= 1`.
#[inline]
fn ceil_log2(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

impl PageHeap {
    pub(crate) const fn new() -> Self {
        PageHeap {
            offset: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            slots: [const { RegionSlot::EMPTY }; MAX_REGIONS],
            lists: CacheAligned(IrqLock::new(Lists {
                heads: [[NIL; ORDERS]; MAX_REGIONS],
                masks: [0; MAX_REGIONS],
                blocks: [0; ORDERS],
                free_pages: 0,
                managed_pages: 0,
                meta_pages: 0,
                peak_used: 0,
                runs: 0,
                run_pages: 0,
                parked: [NIL; PARKED],
                parked_run: (NIL, 0),
                next_fit: NIL,
            })),
        }
    }

    /// Sets the phys→virt offset; before any region is added.
    pub(crate) fn set_offset(&self, offset: PhysOffset) {
        self.offset.store(offset.as_usize(), R);
    }

    #[inline(always)]
    pub(crate) fn offset(&self) -> PhysOffset {
        PhysOffset::new(self.offset.load(R))
    }

    /// The virtual address of a frame.
    #[inline(always)]
    pub(crate) fn virt(&self, pfn: Pfn) -> VirtAddr {
        self.offset().to_virt(pfn.addr())
    }

    fn lock<'a>(&'a self, irq: IrqOff<'a>) -> SpinMutexGuard<'a, Lists> {
        self.lists.lock(irq)
    }

    /// The published region with this index.
    #[inline(always)]
    fn region(&self, index: usize) -> Region<'_> {
        let slot = &self.slots[index];
        let pages = slot.pages.load(R);
        // SAFETY: a published slot's `meta` points at `pages` initialised
        // PageMeta entries inside managed memory, which stays mapped and
        // reserved for the heap for as long as the heap exists.
        let meta = unsafe { core::slice::from_raw_parts(slot.meta.load(R), pages as usize) };
        Region {
            index,
            base: slot.base.load(R),
            pages,
            meta,
        }
    }

    /// The region holding the page at `addr`, and the page's index in it,
    /// without taking the lock.
    ///
    /// # Time Complexity
    /// O(regions): one comparison per region descriptor.
    #[inline(always)]
    pub(crate) fn find(&self, addr: VirtAddr) -> Option<(Region<'_>, u64)> {
        self.slot_of_vpn(addr.as_usize() as u64 >> PAGE_SHIFT)
            .map(|(i, idx)| (self.region(i), idx))
    }

    /// The metadata of the page holding `addr`, without taking the lock:
    /// the free path's lookup, with nothing else loaded.
    ///
    /// # Time Complexity
    /// O(regions): one comparison per region descriptor.
    #[inline(always)]
    pub(crate) fn meta_of(&self, addr: VirtAddr) -> Option<&PageMeta> {
        let (i, idx) = self.slot_of_vpn(addr.as_usize() as u64 >> PAGE_SHIFT)?;
        Some(self.slots[i].meta_at(idx))
    }

    /// [`meta_of`](Self::meta_of) in the first region descriptor only: the
    /// largest region given to `init` (see `Heap::init`), where nearly every
    /// pointer lies. `None` says "look further", not "foreign".
    #[inline(always)]
    pub(crate) fn meta_in_first(&self, addr: VirtAddr) -> Option<&PageMeta> {
        let idx = self.slots[0].index_of(addr.as_usize() as u64 >> PAGE_SHIFT)?;
        Some(self.slots[0].meta_at(idx))
    }

    /// The published region descriptor holding virtual page number `vpn`,
    /// and the page's index in it. Takes no lock.
    ///
    /// The first descriptor is tried before the count is even loaded (an
    /// unpublished descriptor has no pages, so it matches nothing).
    #[inline(always)]
    fn slot_of_vpn(&self, vpn: u64) -> Option<(usize, u64)> {
        if let Some(idx) = self.slots[0].index_of(vpn) {
            return Some((0, idx));
        }
        let count = self.count.load(Ordering::Acquire);
        (1..count).find_map(|i| self.slots[i].index_of(vpn).map(|idx| (i, idx)))
    }

    /// The region and index of a page id.
    #[inline(always)]
    pub(crate) fn by_id(&self, id: PageId) -> (Region<'_>, u64) {
        (self.region(id.region()), id.index())
    }

    /// Adds a region; see [`Heap::add_region`](crate::Heap::add_region).
    ///
    /// # Safety
    /// `range` is RAM that nothing else uses, mapped read-write at
    /// `phys + offset` for as long as the heap exists.
    pub(crate) unsafe fn add_region(
        &self,
        irq: IrqOff<'_>,
        range: PhysRange,
    ) -> Result<u64, HeapError> {
        let start = range.start.as_u64();
        let end = range.end.as_u64();
        if end <= start {
            return Err(HeapError::EmptyRegion(range));
        }
        let overflow = HeapError::AddressOverflow {
            start: range.start,
            len: end - start,
        };
        let offset = self.offset().as_usize() as u64;
        if end.checked_add(offset).is_none() || end > usize::MAX as u64 {
            return Err(overflow);
        }
        let first = start.div_ceil(PAGE_SIZE as u64);
        let last = end / PAGE_SIZE as u64;
        if first >= last {
            return Err(HeapError::EmptyRegion(range));
        }
        let mut lists = self.lock(irq);
        let count = self.count.load(R);
        for slot in &self.slots[..count] {
            let existing = PhysRange::new(
                PhysAddr::new(slot.raw_start.load(R)),
                PhysAddr::new(slot.raw_end.load(R)),
            );
            if existing.overlaps(&range) {
                return Err(HeapError::Overlap {
                    new: range,
                    existing,
                });
            }
        }
        if last - first < 2 {
            return Err(HeapError::TooSmall(range));
        }
        let mut chunks = (last - first).div_ceil(REGION_PAGES_MAX) as usize;
        // Each chunk must hold its metadata and at least one page: a last
        // chunk of one page is dropped.
        let mut last = last;
        if (last - first) % REGION_PAGES_MAX == 1 && chunks > 1 {
            last -= 1;
            chunks -= 1;
        }
        if count + chunks > MAX_REGIONS {
            return Err(HeapError::TooManyRegions(range));
        }
        let mut pfn = first;
        let mut total = 0;
        for c in 0..chunks {
            let n = (last - pfn).min(REGION_PAGES_MAX);
            let raw_start = if c == 0 { start } else { pfn << PAGE_SHIFT };
            let raw_end = if c + 1 == chunks {
                end
            } else {
                (pfn + n) << PAGE_SHIFT
            };
            // SAFETY: the chunk is part of `range`, which the caller vouches
            // for; nothing else in the heap overlaps it (checked above).
            total += unsafe { self.add_chunk(&mut lists, pfn, n, raw_start, raw_end) };
            pfn += n;
        }
        Ok(total)
    }

    /// Carves metadata from the top of `n >= 2` pages at `first`, frees the
    /// rest and publishes the descriptor. Returns the managed pages.
    ///
    /// # Safety
    /// As for [`add_region`](Self::add_region), for these pages.
    unsafe fn add_chunk(
        &self,
        lists: &mut Lists,
        first: u64,
        n: u64,
        raw_start: u64,
        raw_end: u64,
    ) -> u64 {
        // managed + ceil(managed * 16 / 4096) <= n
        const PER_PAGE: u64 = (PAGE_SIZE / core::mem::size_of::<PageMeta>()) as u64;
        let mut managed = n * PER_PAGE / (PER_PAGE + 1);
        while managed + managed.div_ceil(PER_PAGE) > n {
            managed -= 1;
        }
        let meta_pages = n - managed;
        let meta_virt = self.virt(Pfn::new(first + managed));
        let meta: *mut PageMeta = meta_virt.as_mut_ptr();
        // SAFETY: the metadata pages are part of the caller's range, mapped
        // and unused (add_region's contract); all-zero bytes are a valid
        // PageMeta (atomics of 0, kind UNUSED).
        unsafe { core::ptr::write_bytes(meta.cast::<u8>(), 0, meta_pages as usize * PAGE_SIZE) };
        let index = self.count.load(R);
        let slot = &self.slots[index];
        slot.base.store(first, R);
        slot.vbase.store(
            self.virt(Pfn::new(first)).as_usize() as u64 >> PAGE_SHIFT,
            R,
        );
        slot.meta.store(meta, R);
        slot.raw_start.store(raw_start, R);
        slot.raw_end.store(raw_end, R);
        // Last, with Release: a lock-free reader that sees the page count
        // (`slot_of_vpn`) sees the base, the metadata pointer and the zeroed
        // metadata too.
        slot.pages.store(managed, Ordering::Release);
        lists.heads[index] = [NIL; ORDERS];
        lists.masks[index] = 0;
        lists.managed_pages += managed;
        lists.meta_pages += meta_pages;
        let region = self.region(index);
        Self::free_range(lists, region, 0, managed);
        self.count.store(index + 1, Ordering::Release);
        managed
    }

    /// Allocates `n` pages aligned to `2^align_order` pages, ending at or
    /// below frame `limit` if given. Tags the first page with `kind` and `n`.
    ///
    /// # Time Complexity
    /// O(regions + MAX_ORDER) without a limit; with a limit, O(free blocks)
    /// of the regions below it.
    pub(crate) fn alloc(
        &self,
        irq: IrqOff<'_>,
        n: u64,
        align_order: u32,
        limit: Option<Pfn>,
        kind: u8,
    ) -> Option<Run<'_>> {
        if n == 0 || n > REGION_PAGES_MAX {
            return None;
        }
        let mut lists = self.lock(irq);
        self.alloc_locked(&mut lists, n, align_order, limit, kind)
    }

    /// Takes up to `out.len()` single pages (runs of one page, tagged
    /// `CACHED`) under one acquisition of the lock, for a CPU's page list.
    /// Returns how many; their virtual addresses are in `out`.
    pub(crate) fn alloc_singles(&self, irq: IrqOff<'_>, out: &mut [VirtAddr]) -> usize {
        let mut lists = self.lock(irq);
        let mut n = 0;
        while n < out.len() {
            let Some(run) = self.alloc_locked(&mut lists, 1, 0, None, kind::RUN) else {
                break;
            };
            run.region.meta(run.index).set_tag(kind::CACHED, 0);
            out[n] = self.virt(run.region.pfn(run.index));
            n += 1;
        }
        n
    }

    /// Frees single pages (tagged `CACHED`) under one acquisition of the
    /// lock: a CPU's page list flushing.
    pub(crate) fn free_singles(&self, irq: IrqOff<'_>, pages: &[VirtAddr]) {
        let mut lists = self.lock(irq);
        for &page in pages {
            let Some((region, index)) = self.find(page) else {
                unreachable!("strata: cached page {page} is outside every region");
            };
            if !region.meta(index).change_kind(kind::CACHED, kind::RUN) {
                unreachable!("strata: page {page} on a CPU's page list is not marked as cached");
            }
            self.free_locked(&mut lists, Run { region, index }, 1);
        }
    }

    fn alloc_locked(
        &self,
        lists: &mut Lists,
        n: u64,
        align_order: u32,
        limit: Option<Pfn>,
        kind: u8,
    ) -> Option<Run<'_>> {
        let need = ceil_log2(n).max(align_order);
        if need > MAX_ORDER {
            return None;
        }
        let count = self.count.load(R);
        let parked = if limit.is_none() && need <= PARK_MAX_ORDER {
            self.take_parked(lists, need)
        } else {
            None
        };
        let packed = if parked.is_some() || limit.is_some() {
            None
        } else {
            self.take_parked_run(lists, n, align_order).or_else(|| {
                (align_order == 0 && !n.is_power_of_two()).then(|| self.take_next_fit(lists, n))?
            })
        };
        // `order`: the block taken, to split down to `need` and trim; None
        // when the run was assembled from smaller blocks, already exact.
        let (region, index, order) = match limit {
            _ if parked.is_some() => {
                let (region, index) = parked?;
                (region, index, Some(need))
            }
            _ if packed.is_some() => {
                let (region, index) = packed?;
                (region, index, None)
            }
            None => {
                if (0..count).all(|r| lists.masks[r] >> need == 0) {
                    self.unpark_all(lists);
                }
                // Smallest fitting order over all regions; on a tie the
                // highest region, to keep low memory for limited requests.
                let mut best: Option<(u32, usize, u64)> = None;
                for r in 0..count {
                    let m = lists.masks[r] >> need;
                    if m == 0 {
                        continue;
                    }
                    let o = need + m.trailing_zeros();
                    let base = self.slots[r].base.load(R);
                    if best.is_none_or(|(bo, _, bb)| o < bo || (o == bo && base > bb)) {
                        best = Some((o, r, base));
                    }
                }
                match best {
                    Some((order, r, _)) => {
                        let region = self.region(r);
                        let index = lists.heads[r][order as usize] as u64;
                        Self::unlink(lists, region, index, order);
                        (region, index, Some(order))
                    }
                    None => {
                        let (region, index) = self.assemble(lists, count, n, align_order, None)?;
                        (region, index, None)
                    }
                }
            }
            Some(limit) => {
                self.unpark_all(lists);
                let limit = limit.as_u64();
                match self.take_below(lists, count, n, need, limit) {
                    Some((region, index, order)) => (region, index, Some(order)),
                    None => {
                        let (region, index) =
                            self.assemble(lists, count, n, align_order, Some(limit))?;
                        (region, index, None)
                    }
                }
            }
        };
        if let Some(mut order) = order {
            // Split down to `need`, keeping the lower half.
            while order > need {
                order -= 1;
                Self::push(lists, region, index + (1 << order), order);
            }
            // Give the surplus of the rounded-up block straight back.
            if (1 << need) > n {
                Self::free_range(lists, region, index + n, (1 << need) - n);
            }
        }
        if !n.is_power_of_two() && index + n < region.pages {
            lists.next_fit = region.id(index + n).0;
        }
        let used = lists.managed_pages - lists.free_pages;
        lists.peak_used = lists.peak_used.max(used);
        if kind == kind::RUN {
            lists.runs += 1;
            lists.run_pages += n;
        }
        let head = region.meta(index);
        head.set_tag(kind, 0);
        head.a.store(n as u32, R);
        head.b.store(0, R);
        Some(Run { region, index })
    }

    /// Finds and unlinks a free block of order >= `need` whose first `n`
    /// pages end at or below `limit`. A run that only smaller blocks below
    /// the limit hold is left to [`assemble`](Self::assemble).
    #[cold]
    #[inline(never)]
    fn take_below<'a>(
        &'a self,
        lists: &mut Lists,
        count: usize,
        n: u64,
        need: u32,
        limit: u64,
    ) -> Option<(Region<'a>, u64, u32)> {
        for r in 0..count {
            let region = self.region(r);
            if region.base + n > limit {
                continue;
            }
            for order in need..=MAX_ORDER {
                let mut i = lists.heads[r][order as usize];
                while i != NIL {
                    let idx = i as u64;
                    // The block is aligned to 2^order >= 2^need, so its
                    // lowest 2^need pages are a suitable block themselves.
                    if region.base + idx + n <= limit {
                        Self::unlink(lists, region, idx, order);
                        return Some((region, idx, order));
                    }
                    i = region.meta(idx).b.load(R);
                }
            }
        }
        None
    }

    /// Finds `n` free pages made of adjacent smaller blocks when no single
    /// block serves the request (a region that is not a power of two,
    /// fragmentation, or a `limit` that the fitting blocks end past): a run
    /// that starts at the head of a free block of order below
    /// `max(ceil(log2 n), align_order)` aligned to `2^align_order` pages,
    /// whose pages are all free, and which ends at or below frame `limit`
    /// if given. Unlinks the blocks and frees what lies past `n`.
    ///
    /// Parked blocks are not seen: the caller merges them first.
    ///
    /// # Time Complexity
    /// O(free blocks × log n): the slow path before reporting out of memory.
    #[cold]
    #[inline(never)]
    fn assemble<'a>(
        &'a self,
        lists: &mut Lists,
        count: usize,
        n: u64,
        align_order: u32,
        limit: Option<u64>,
    ) -> Option<(Region<'a>, u64)> {
        // Blocks of order `top` or more serve the request alone, and
        // `alloc_locked` / `take_below` looked at those already; a head of a
        // lower order can still be aligned well enough.
        let top = ceil_log2(n).max(align_order);
        let limit = limit.unwrap_or(u64::MAX);
        let misaligned = (1u64 << align_order) - 1;
        for r in 0..count {
            let region = self.region(r);
            if region.base + n > limit {
                continue;
            }
            for order in (0..top).rev() {
                let mut h = lists.heads[r][order as usize];
                while h != NIL {
                    let start = h as u64;
                    h = region.meta(start).b.load(R);
                    if (region.base + start) & misaligned != 0 || region.base + start + n > limit {
                        continue;
                    }
                    let end = start + n;
                    let mut cursor = start;
                    while cursor < end && cursor < region.pages {
                        let m = region.meta(cursor);
                        if m.kind() != kind::FREE {
                            break;
                        }
                        cursor += 1 << (m.tag() >> 8);
                    }
                    if cursor >= end {
                        let mut c = start;
                        while c < cursor {
                            let o = (region.meta(c).tag() >> 8) as u32;
                            Self::unlink(lists, region, c, o);
                            c += 1 << o;
                        }
                        Self::free_range(lists, region, end, cursor - end);
                        return Some((region, start));
                    }
                }
            }
        }
        None
    }

    /// Frees a run of `n` pages at region-local `index`.
    ///
    /// # Panics
    /// If the run is not a live run of `n` pages (or a span) under the lock.
    pub(crate) fn free(&self, irq: IrqOff<'_>, run: Run<'_>, n: u64) {
        let mut lists = self.lock(irq);
        self.free_locked(&mut lists, run, n)
    }

    fn free_locked(&self, lists: &mut Lists, run: Run<'_>, n: u64) {
        let head = self.live_run(run, n, true);
        if head.kind() == kind::RUN {
            // A `free_pages` on another CPU may turn a one-page run into a
            // `CACHED` page at any moment without this lock: take the run
            // with a compare-exchange, so of two such frees exactly one wins.
            if !head.change_kind(kind::RUN, kind::UNUSED) {
                self.dead_run(run, n);
            }
            lists.runs -= 1;
            lists.run_pages -= n;
        } else {
            head.set_tag(kind::UNUSED, 0);
        }
        if !n.is_power_of_two() && n < 1 << PARK_MAX_ORDER {
            lists.free_pages += n;
            if let Some(merged) = self.beside_parked_run(lists, run, n) {
                lists.parked_run = merged;
                return;
            }
            let old = core::mem::replace(
                &mut lists.parked_run,
                (run.region.id(run.index).0, n as u32),
            );
            if old.0 != NIL {
                self.unpark_run(lists, old);
            }
            return;
        }
        let (region, mut index, mut left) = (run.region, run.index, n);
        while left > 0 {
            let order = Self::chunk_order(region, index, left);
            if order <= PARK_MAX_ORDER {
                self.park(lists, region, index, order);
            } else {
                Self::free_block(lists, region, index, order);
            }
            index += 1 << order;
            left -= 1 << order;
        }
    }

    /// The head of `run`, checked under the lock to be a live run of `n`
    /// pages before anything is changed: a `RUN` or `INTERNAL` head that
    /// records `n`, or (`span`, a free) the head of a span, whose retirement
    /// the span's central-list lock serialises. The callers' lock-free
    /// checks cannot see a second free of the run racing with the first;
    /// whichever takes the lock second finds the head `UNUSED` here.
    ///
    /// # Panics
    /// If it is not, naming the run's address.
    #[inline(always)]
    fn live_run<'a>(&self, run: Run<'a>, n: u64, span: bool) -> &'a PageMeta {
        let head = run.region.meta(run.index);
        let tag = head.tag();
        let live = if tag == kind::RUN as u16 || tag == kind::INTERNAL as u16 {
            head.a.load(R) as u64 == n
        } else {
            span && tag as u8 == kind::SPAN_HEAD
        };
        if !live {
            self.dead_run(run, n);
        }
        head
    }

    #[cold]
    #[inline(never)]
    fn dead_run(&self, run: Run<'_>, n: u64) -> ! {
        let addr = self.virt(run.region.pfn(run.index));
        let head = run.region.meta(run.index);
        let (tag, len) = (head.tag(), head.a.load(R));
        panic!(
            "strata: free of {addr}: no live run of {n} pages there when the page heap \
             checked it under its lock (tag {tag:#06x}, length {len}): freed twice, or freed \
             or resized by two CPUs at once"
        )
    }

    /// Parks a freed block as the one kept unmerged for its order, merging
    /// the block parked before it.
    fn park(&self, lists: &mut Lists, region: Region<'_>, index: u64, order: u32) {
        let old = core::mem::replace(&mut lists.parked[order as usize], region.id(index).0);
        lists.free_pages += 1 << order;
        lists.blocks[order as usize] += 1;
        if old != NIL {
            self.unpark(lists, PageId(old), order);
        }
    }

    /// Takes `n` pages where the last odd-sized run ended, if they are
    /// free: runs of one odd size then pack back to back instead of each
    /// stranding the surplus of its rounded-up block between two runs.
    fn take_next_fit(&self, lists: &mut Lists, n: u64) -> Option<(Region<'_>, u64)> {
        if lists.next_fit == NIL {
            return None;
        }
        let (region, index) = self.by_id(PageId(lists.next_fit));
        Self::claim_free(lists, region, index, index + n).then_some((region, index))
    }

    /// The parked run and the freed run `run` of `n` pages as one, if they
    /// touch (in one region) and the whole stays below the parking limit.
    fn beside_parked_run(&self, lists: &Lists, run: Run<'_>, n: u64) -> Option<(u32, u32)> {
        let (id, len) = lists.parked_run;
        if id == NIL {
            return None;
        }
        let (region, index) = self.by_id(PageId(id));
        let len = len as u64;
        if region.index != run.region.index || len + n >= 1 << PARK_MAX_ORDER {
            return None;
        }
        if run.index + n == index {
            Some((run.region.id(run.index).0, (len + n) as u32))
        } else if index + len == run.index {
            Some((id, (len + n) as u32))
        } else {
            None
        }
    }

    /// Takes `n` pages at the parked run, if it starts aligned to
    /// `2^align_order` pages: all of it if it is exactly `n` long, its first
    /// `n` pages if longer (the rest stays parked), or the run grown in
    /// place if the pages after it are free. A run freed next to the parked
    /// rest joins it again (see `free`), so a kernel that frees and
    /// allocates page runs of varying sizes in turn reuses one place
    /// without touching the free lists.
    fn take_parked_run(
        &self,
        lists: &mut Lists,
        n: u64,
        align_order: u32,
    ) -> Option<(Region<'_>, u64)> {
        let (id, len) = lists.parked_run;
        if id == NIL {
            return None;
        }
        let (region, index) = self.by_id(PageId(id));
        let len = len as u64;
        if (region.base + index) % (1 << align_order) != 0
            || (n > len && !Self::claim_free(lists, region, index + len, index + n))
        {
            return None;
        }
        if len > n {
            // The rest stays parked; its first page is an interior page of
            // the run freed there, so it is already tagged `UNUSED`.
            lists.parked_run = (region.id(index + n).0, (len - n) as u32);
            lists.free_pages -= n;
        } else {
            lists.parked_run = (NIL, 0);
            lists.free_pages -= len;
        }
        Some((region, index))
    }

    /// Takes the parked block of `order`, if any.
    fn take_parked(&self, lists: &mut Lists, order: u32) -> Option<(Region<'_>, u64)> {
        let id = core::mem::replace(&mut lists.parked[order as usize], NIL);
        if id == NIL {
            return None;
        }
        lists.free_pages -= 1 << order;
        lists.blocks[order as usize] -= 1;
        Some(self.by_id(PageId(id)))
    }

    /// Merges a parked run into the free lists.
    fn unpark_run(&self, lists: &mut Lists, (id, n): (u32, u32)) {
        let (region, index) = self.by_id(PageId(id));
        lists.free_pages -= n as u64;
        Self::free_range(lists, region, index, n as u64);
    }

    /// Merges a parked block into the free lists.
    fn unpark(&self, lists: &mut Lists, id: PageId, order: u32) {
        let (region, index) = self.by_id(id);
        lists.free_pages -= 1 << order;
        lists.blocks[order as usize] -= 1;
        Self::free_block(lists, region, index, order);
    }

    /// Merges every parked block: before a search that must see all free
    /// memory (a limit, an assembled run, a grow, or no fitting block).
    #[cold]
    fn unpark_all(&self, lists: &mut Lists) {
        let run = core::mem::replace(&mut lists.parked_run, (NIL, 0));
        if run.0 != NIL {
            self.unpark_run(lists, run);
        }
        for order in 0..PARKED {
            let id = core::mem::replace(&mut lists.parked[order], NIL);
            if id != NIL {
                self.unpark(lists, PageId(id), order as u32);
            }
        }
    }

    /// Returns pages `[index + keep, index + n)` of a run to the free lists.
    ///
    /// # Panics
    /// If the run is not a live run of `n` pages under the lock.
    pub(crate) fn shrink(&self, irq: IrqOff<'_>, run: Run<'_>, n: u64, keep: u64) {
        let mut lists = self.lock(irq);
        let head = self.live_run(run, n, false);
        lists.run_pages -= n - keep;
        head.a.store(keep as u32, R);
        Self::free_range(&mut lists, run.region, run.index + keep, n - keep);
    }

    /// Extends a run of `n` pages to `new_n` if the pages after it are free.
    ///
    /// # Panics
    /// If the run is not a live run of `n` pages under the lock (a grow
    /// past the region's end returns `false` without the lock).
    ///
    /// # Time Complexity
    /// O(log(new_n - n)) blocks inspected.
    pub(crate) fn grow(&self, irq: IrqOff<'_>, run: Run<'_>, n: u64, new_n: u64) -> bool {
        let region = run.region;
        let end = run.index + new_n;
        if end > region.pages {
            return false;
        }
        let mut lists = self.lock(irq);
        let head = self.live_run(run, n, false);
        self.unpark_all(&mut lists);
        if !Self::claim_free(&mut lists, region, run.index + n, end) {
            return false;
        }
        head.a.store(new_n as u32, R);
        lists.run_pages += new_n - n;
        let used = lists.managed_pages - lists.free_pages;
        lists.peak_used = lists.peak_used.max(used);
        true
    }

    /// Takes pages `[from, to)` if free blocks on the lists cover them,
    /// giving back what the last block holds past `to`. Any free block that
    /// holds page `from` starts there when page `from - 1` is not free (the
    /// end of a run, or of an earlier claim), and so on block by block.
    ///
    /// # Time Complexity
    /// O(log(to - from)) blocks inspected.
    fn claim_free(lists: &mut Lists, region: Region<'_>, from: u64, to: u64) -> bool {
        if to > region.pages {
            return false;
        }
        let mut cursor = from;
        while cursor < to {
            let m = region.meta(cursor);
            if m.kind() != kind::FREE {
                return false;
            }
            cursor += 1 << (m.tag() >> 8);
        }
        let mut c = from;
        while c < cursor {
            let order = (region.meta(c).tag() >> 8) as u32;
            Self::unlink(lists, region, c, order);
            c += 1 << order;
        }
        if cursor > to {
            Self::free_range(lists, region, to, cursor - to);
        }
        true
    }

    /// Frees `[index, index + n)` as maximal aligned blocks, coalescing.
    fn free_range(lists: &mut Lists, region: Region<'_>, mut index: u64, mut n: u64) {
        while n > 0 {
            let order = Self::chunk_order(region, index, n);
            Self::free_block(lists, region, index, order);
            index += 1 << order;
            n -= 1 << order;
        }
    }

    /// The order of the largest aligned block at `index` within `n` pages.
    #[inline]
    fn chunk_order(region: Region<'_>, index: u64, n: u64) -> u32 {
        let align = (region.base + index).trailing_zeros();
        let fit = 63 - n.leading_zeros();
        align.min(fit).min(MAX_ORDER)
    }

    /// Frees one aligned block, merging it with free buddies.
    fn free_block(lists: &mut Lists, region: Region<'_>, mut index: u64, mut order: u32) {
        while order < MAX_ORDER {
            let buddy = (region.base + index) ^ (1 << order);
            let Some(b) = buddy.checked_sub(region.base) else {
                break;
            };
            if b + (1 << order) > region.pages {
                break;
            }
            let m = region.meta(b);
            if m.tag() != kind::FREE as u16 | (order as u16) << 8 {
                break;
            }
            Self::unlink(lists, region, b, order);
            m.set_tag(kind::UNUSED, 0);
            index = index.min(b);
            order += 1;
        }
        Self::push(lists, region, index, order);
    }

    fn push(lists: &mut Lists, region: Region<'_>, index: u64, order: u32) {
        let r = region.index;
        let head = lists.heads[r][order as usize];
        let m = region.meta(index);
        m.set_tag(kind::FREE, order as u8);
        m.a.store(NIL, R);
        m.b.store(head, R);
        if head != NIL {
            region.meta(head as u64).a.store(index as u32, R);
        }
        lists.heads[r][order as usize] = index as u32;
        lists.masks[r] |= 1 << order;
        lists.blocks[order as usize] += 1;
        lists.free_pages += 1 << order;
    }

    fn unlink(lists: &mut Lists, region: Region<'_>, index: u64, order: u32) {
        let r = region.index;
        let m = region.meta(index);
        debug_assert_eq!(m.tag(), kind::FREE as u16 | (order as u16) << 8);
        let (prev, next) = (m.a.load(R), m.b.load(R));
        if prev == NIL {
            lists.heads[r][order as usize] = next;
        } else {
            region.meta(prev as u64).b.store(next, R);
        }
        if next != NIL {
            region.meta(next as u64).a.store(prev, R);
        }
        if lists.heads[r][order as usize] == NIL {
            lists.masks[r] &= !(1 << order);
        }
        m.set_tag(kind::UNUSED, 0);
        lists.blocks[order as usize] -= 1;
        lists.free_pages -= 1 << order;
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self, irq: IrqOff<'_>) -> PageStats {
        let lists = self.lock(irq);
        PageStats {
            managed_pages: lists.managed_pages,
            metadata_pages: lists.meta_pages,
            free_pages: lists.free_pages,
            peak_used_pages: lists.peak_used,
            free_blocks: lists.blocks,
            regions: self.count.load(R),
            runs: lists.runs,
            run_pages: lists.run_pages,
        }
    }

    /// The ranges of the region descriptors, as the caller gave them.
    pub(crate) fn region_range(&self, index: usize) -> Option<PhysRange> {
        if index >= self.count.load(Ordering::Acquire) {
            return None;
        }
        let slot = &self.slots[index];
        Some(PhysRange::new(
            PhysAddr::new(slot.raw_start.load(R)),
            PhysAddr::new(slot.raw_end.load(R)),
        ))
    }

    /// Checks every invariant of the free lists. For tests.
    ///
    /// # Panics
    /// On the first violated invariant.
    pub(crate) fn check(&self, irq: IrqOff<'_>) {
        let lists = self.lock(irq);
        let mut free = 0;
        for r in 0..self.count.load(R) {
            let region = self.region(r);
            for order in 0..ORDERS {
                let mut i = lists.heads[r][order];
                let mut prev = NIL;
                assert_eq!(
                    lists.masks[r] & (1 << order) != 0,
                    i != NIL,
                    "mask of order {order}"
                );
                while i != NIL {
                    let m = region.meta(i as u64);
                    assert_eq!(
                        m.tag(),
                        kind::FREE as u16 | (order as u16) << 8,
                        "tag of free block {i} of region {r} on the list of order {order}"
                    );
                    assert_eq!(m.a.load(R), prev, "back link");
                    assert_eq!(
                        (region.base + i as u64) % (1 << order),
                        0,
                        "block alignment"
                    );
                    assert!(
                        i as u64 + (1 << order) <= region.pages,
                        "free block {i} of order {order} ends past region {r}"
                    );
                    free += 1u64 << order;
                    prev = i;
                    i = m.b.load(R);
                }
            }
        }
        for (order, &id) in lists.parked.iter().enumerate() {
            if id != NIL {
                let (region, index) = self.by_id(PageId(id));
                assert_eq!(region.meta(index).kind(), kind::UNUSED, "parked block tag");
                assert_eq!(
                    (region.base + index) % (1 << order),
                    0,
                    "parked block alignment"
                );
                free += 1u64 << order;
            }
        }
        if lists.parked_run.0 != NIL {
            let (region, index) = self.by_id(PageId(lists.parked_run.0));
            assert_eq!(region.meta(index).kind(), kind::UNUSED, "parked run tag");
            free += lists.parked_run.1 as u64;
        }
        assert_eq!(free, lists.free_pages, "free page count");
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A page-aligned host buffer posing as physical memory (offset 0).
    struct Arena {
        mem: Vec<u8>,
        /// Bytes the first page is aligned to.
        align: usize,
    }
    impl Arena {
        fn new(pages: usize) -> Self {
            Self::aligned(pages, 1)
        }
        /// `pages` pages whose first is aligned to `align` pages.
        fn aligned(pages: usize, align: usize) -> Self {
            Arena {
                mem: std::vec![0u8; (pages + align) * PAGE_SIZE],
                align: align * PAGE_SIZE,
            }
        }
        fn range(&mut self, from_page: usize, pages: usize) -> PhysRange {
            let base = (self.mem.as_mut_ptr() as usize).next_multiple_of(self.align)
                + from_page * PAGE_SIZE;
            PhysRange::from_start_len(PhysAddr::new(base as u64), (pages * PAGE_SIZE) as u64)
                .unwrap()
        }
    }

    fn irq() -> IrqOff<'static> {
        IrqOff::for_tests()
    }

    #[test]
    fn metadata_is_carved_and_under_half_a_percent() {
        let mut a = Arena::new(1024);
        let heap = PageHeap::new();
        // SAFETY: the arena is a live host buffer, identity-mapped, used by this heap only.
        let managed = unsafe { heap.add_region(irq(), a.range(0, 1024)) }.unwrap();
        let s = heap.stats(irq());
        assert_eq!(managed + s.metadata_pages, 1024);
        assert_eq!(s.metadata_pages, 4);
        assert_eq!(s.free_pages, managed);
        assert!(s.metadata_pages as f64 / 1024.0 <= 0.005);
        heap.check(irq());
    }

    #[test]
    fn runs_cost_exactly_their_pages_and_coalesce_back() {
        let mut a = Arena::new(512);
        let heap = PageHeap::new();
        // SAFETY: the arena is a live host buffer, identity-mapped, used by this heap only.
        unsafe { heap.add_region(irq(), a.range(0, 512)) }.unwrap();
        let start = heap.stats(irq()).free_pages;
        let mut runs = Vec::new();
        for n in [1u64, 3, 5, 7, 17, 2, 33] {
            let run = heap.alloc(irq(), n, 0, None, kind::RUN).unwrap();
            assert_eq!(
                heap.stats(irq()).free_pages,
                start - runs.iter().map(|(_, n)| n).sum::<u64>() - n
            );
            runs.push((run, n));
            heap.check(irq());
        }
        // no two runs overlap
        for (i, (r1, n1)) in runs.iter().enumerate() {
            for (r2, n2) in &runs[i + 1..] {
                assert!(r1.index + n1 <= r2.index || r2.index + n2 <= r1.index);
            }
        }
        for (run, n) in runs.into_iter().rev() {
            heap.free(irq(), run, n);
            heap.check(irq());
        }
        assert_eq!(heap.stats(irq()).free_pages, start);
    }

    #[test]
    fn alignment_and_limit_are_honoured() {
        let mut a = Arena::new(2048);
        let heap = PageHeap::new();
        let range = a.range(3, 2000);
        // SAFETY: the arena is a live host buffer, identity-mapped, used by this heap only.
        unsafe { heap.add_region(irq(), range) }.unwrap();
        let run = heap.alloc(irq(), 3, 6, None, kind::RUN).unwrap();
        assert_eq!(run.region.pfn(run.index).as_u64() % 64, 0);
        let limit = range.start.pfn().add(40);
        let low = heap.alloc(irq(), 8, 0, Some(limit), kind::RUN).unwrap();
        assert!(low.region.pfn(low.index).as_u64() + 8 <= limit.as_u64());
        assert!(heap
            .alloc(irq(), 64, 0, Some(range.start.pfn().add(10)), kind::RUN)
            .is_none());
        heap.check(irq());
    }

    #[test]
    fn parked_blocks_are_reused_and_merged_when_needed() {
        let mut a = Arena::new(1024);
        let heap = PageHeap::new();
        // SAFETY: the arena is a live host buffer, identity-mapped, used by this heap only.
        unsafe { heap.add_region(irq(), a.range(0, 1024)) }.unwrap();
        let start = heap.stats(irq()).free_pages;
        let run = heap.alloc(irq(), 16, 0, None, kind::RUN).unwrap();
        heap.free(irq(), run, 16);
        assert_eq!(heap.stats(irq()).free_pages, start);
        heap.check(irq());
        // The same size gets the parked block back.
        let again = heap.alloc(irq(), 16, 0, None, kind::RUN).unwrap();
        assert_eq!(again.index, run.index);
        heap.free(irq(), again, 16);
        // A request that needs everything merges the parked blocks first.
        let managed = heap.stats(irq()).managed_pages;
        let largest = 1u64 << (63 - managed.leading_zeros());
        let all = heap.alloc(irq(), largest, 0, None, kind::RUN);
        assert!(all.is_some(), "parked blocks were not merged back");
        heap.free(irq(), all.unwrap(), largest);
        heap.check(irq());
        assert_eq!(heap.stats(irq()).free_pages, start);
    }

    #[test]
    fn runs_of_varying_sizes_reuse_one_parked_extent() {
        let mut a = Arena::new(2048);
        let heap = PageHeap::new();
        // SAFETY: the arena is a live host buffer, identity-mapped, used by this heap only.
        unsafe { heap.add_region(irq(), a.range(0, 2048)) }.unwrap();
        let start = heap.stats(irq()).free_pages;
        let first = heap.alloc(irq(), 300, 0, None, kind::RUN).unwrap();
        heap.free(irq(), first, 300);
        let lists = heap.stats(irq()).free_blocks;
        // Shorter runs take the head of the parked extent; freed, each joins
        // the rest again: the free lists are never touched.
        for n in [200u64, 299, 7, 150, 300, 3] {
            let run = heap.alloc(irq(), n, 0, None, kind::RUN).unwrap();
            assert_eq!(run.index, first.index, "{n} pages");
            assert_eq!(heap.stats(irq()).free_pages, start - n);
            heap.check(irq());
            heap.free(irq(), run, n);
            assert_eq!(heap.stats(irq()).free_blocks, lists, "{n} pages");
            assert_eq!(heap.stats(irq()).free_pages, start);
            heap.check(irq());
        }
        // Two live runs: the second takes the rest of the extent; both
        // freed (in either order) make it whole again.
        let a1 = heap.alloc(irq(), 100, 0, None, kind::RUN).unwrap();
        let a2 = heap.alloc(irq(), 150, 0, None, kind::RUN).unwrap();
        assert_eq!(a2.index, first.index + 100);
        heap.free(irq(), a2, 150);
        heap.free(irq(), a1, 100);
        heap.check(irq());
        let whole = heap.alloc(irq(), 300, 0, None, kind::RUN).unwrap();
        assert_eq!(whole.index, first.index);
        heap.free(irq(), whole, 300);
        // Everything merges back for a request that needs all memory.
        let managed = heap.stats(irq()).managed_pages;
        let largest = 1u64 << (63 - managed.leading_zeros());
        let all = heap.alloc(irq(), largest, 0, None, kind::RUN).unwrap();
        heap.free(irq(), all, largest);
        heap.check(irq());
        assert_eq!(heap.stats(irq()).free_pages, start);
    }

    #[test]
    fn grow_and_shrink_in_place() {
        let mut a = Arena::new(300);
        let heap = PageHeap::new();
        // SAFETY: the arena is a live host buffer, identity-mapped, used by this heap only.
        unsafe { heap.add_region(irq(), a.range(0, 300)) }.unwrap();
        let start = heap.stats(irq()).free_pages;
        let run = heap.alloc(irq(), 5, 0, None, kind::RUN).unwrap();
        assert!(heap.grow(irq(), run, 5, 8));
        assert_eq!(heap.stats(irq()).free_pages, start - 8);
        heap.shrink(irq(), run, 8, 2);
        assert_eq!(heap.stats(irq()).free_pages, start - 2);
        heap.check(irq());
        let blocker = heap.alloc(irq(), 1, 0, None, kind::RUN).unwrap();
        if blocker.index == run.index + 2 {
            assert!(!heap.grow(irq(), run, 2, 4));
        }
        heap.free(irq(), blocker, 1);
        heap.free(irq(), run, 2);
        assert_eq!(heap.stats(irq()).free_pages, start);
        heap.check(irq());
    }

    /// A heap over one region of exactly `2^order` managed pages, the first
    /// aligned to their number: one free block of `order`.
    fn one_block(order: u32) -> (Arena, PageHeap) {
        let pages = 1usize << order;
        let meta = (pages * core::mem::size_of::<PageMeta>()).div_ceil(PAGE_SIZE);
        let mut a = Arena::aligned(pages + meta, pages);
        let heap = PageHeap::new();
        // SAFETY: the arena is a live host buffer, identity-mapped, used by this heap only.
        let managed = unsafe { heap.add_region(irq(), a.range(0, pages + meta)) }.unwrap();
        assert_eq!(managed, pages as u64);
        assert_eq!(heap.stats(irq()).free_blocks, blocks_of(order));
        (a, heap)
    }

    /// Free block counts of exactly one block of `order`.
    fn blocks_of(order: u32) -> [u64; ORDERS] {
        let mut b = [0; ORDERS];
        b[order as usize] = 1;
        b
    }

    #[test]
    fn freeing_everything_coalesces_into_one_block() {
        let (_a, heap) = one_block(10);
        // Every page its own run, freed from the lowest up and from the
        // highest down: each upper and each lower buddy must merge.
        for reverse in [false, true] {
            let mut runs: Vec<_> = (0..1024)
                .map(|_| heap.alloc(irq(), 1, 0, None, kind::RUN).unwrap())
                .collect();
            runs.sort_by_key(|r| r.index);
            if reverse {
                runs.reverse();
            }
            for run in runs {
                heap.free(irq(), run, 1);
            }
            heap.unpark_all(&mut heap.lock(irq()));
            heap.check(irq());
            assert_eq!(
                heap.stats(irq()).free_blocks,
                blocks_of(10),
                "reverse {reverse}"
            );
        }
        // Runs of mixed sizes, freed in a scrambled order.
        let mut runs = Vec::new();
        for n in [3u64, 1, 7, 2, 100, 5, 64, 33, 9, 300, 17] {
            runs.push((heap.alloc(irq(), n, 0, None, kind::RUN).unwrap(), n));
        }
        for i in [4usize, 0, 9, 2, 7, 1, 10, 5, 3, 8, 6] {
            let (run, n) = runs[i];
            heap.free(irq(), run, n);
        }
        heap.unpark_all(&mut heap.lock(irq()));
        heap.check(irq());
        assert_eq!(heap.stats(irq()).free_blocks, blocks_of(10));
        let all = heap.alloc(irq(), 1024, 0, None, kind::RUN).unwrap();
        assert_eq!(all.index, 0);
        heap.free(irq(), all, 1024);
    }

    #[test]
    #[should_panic(expected = "tag of free block 0 of region 0 on the list of order 6")]
    fn check_catches_a_free_block_of_the_wrong_order() {
        let (_a, heap) = one_block(6);
        heap.region(0).meta(0).set_tag(kind::FREE, 5);
        heap.check(irq());
    }

    #[test]
    #[should_panic(expected = "tag of free block 0 of region 0 on the list of order 6")]
    fn check_catches_a_free_block_tagged_as_a_run() {
        let (_a, heap) = one_block(6);
        heap.region(0).meta(0).set_tag(kind::RUN, 0);
        heap.check(irq());
    }

    #[test]
    #[should_panic(expected = "free page count")]
    fn check_catches_a_wrong_free_count() {
        let (_a, heap) = one_block(6);
        heap.lock(irq()).free_pages += 1;
        heap.check(irq());
    }

    #[test]
    #[should_panic(expected = "no live run of 3 pages there when the page heap checked it")]
    fn a_second_free_panics_under_the_lock() {
        let (_a, heap) = one_block(6);
        let run = heap.alloc(irq(), 3, 0, None, kind::RUN).unwrap();
        heap.free(irq(), run, 3);
        heap.free(irq(), run, 3);
    }

    #[test]
    #[should_panic(expected = "no live run of 8 pages there when the page heap checked it")]
    fn a_second_free_of_a_parked_block_panics_under_the_lock() {
        let (_a, heap) = one_block(6);
        let run = heap.alloc(irq(), 8, 0, None, kind::RUN).unwrap();
        heap.free(irq(), run, 8);
        heap.free(irq(), run, 8);
    }

    #[test]
    #[should_panic(expected = "no live run of 4 pages there when the page heap checked it")]
    fn a_free_of_the_wrong_length_panics_under_the_lock() {
        let (_a, heap) = one_block(6);
        let run = heap.alloc(irq(), 3, 0, None, kind::RUN).unwrap();
        heap.free(irq(), run, 4);
    }

    #[test]
    #[should_panic(expected = "no live run of 5 pages there when the page heap checked it")]
    fn a_shrink_of_a_freed_run_panics_under_the_lock() {
        let (_a, heap) = one_block(6);
        let run = heap.alloc(irq(), 5, 0, None, kind::RUN).unwrap();
        heap.free(irq(), run, 5);
        heap.shrink(irq(), run, 5, 2);
    }

    #[test]
    #[should_panic(expected = "no live run of 5 pages there when the page heap checked it")]
    fn a_grow_of_a_freed_run_panics_under_the_lock() {
        let (_a, heap) = one_block(6);
        let run = heap.alloc(irq(), 5, 0, None, kind::RUN).unwrap();
        heap.free(irq(), run, 5);
        heap.grow(irq(), run, 5, 6);
    }

    #[test]
    fn the_message_names_the_address() {
        let (_a, heap) = one_block(6);
        let run = heap.alloc(irq(), 2, 0, None, kind::RUN).unwrap();
        let addr = heap.virt(run.region.pfn(run.index));
        heap.free(irq(), run, 2);
        let err =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| heap.free(irq(), run, 2)))
                .unwrap_err();
        let text = err.downcast::<std::string::String>().unwrap();
        assert!(
            text.starts_with(&std::format!("strata: free of {addr}: ")),
            "{text}"
        );
        // The panic released the lock and changed nothing.
        heap.check(irq());
        assert_eq!(heap.stats(irq()).free_pages, 64);
    }

    #[test]
    fn a_parked_run_stays_under_the_parking_limit() {
        let (_a, heap) = one_block(11);
        let id = |run: Run<'_>| run.region.id(run.index).0;
        // 300 pages, then 724 right after them (where the first ended).
        let a1 = heap.alloc(irq(), 300, 0, None, kind::RUN).unwrap();
        let a2 = heap.alloc(irq(), 724, 0, None, kind::RUN).unwrap();
        assert_eq!(a2.index, a1.index + 300);
        heap.free(irq(), a1, 300);
        assert_eq!(heap.lock(irq()).parked_run, (id(a1), 300));
        // Together 1024 pages: the parking limit, so they stay apart.
        heap.free(irq(), a2, 724);
        assert_eq!(heap.lock(irq()).parked_run, (id(a2), 724));
        heap.check(irq());
        // 300 + 723 pages join.
        let b1 = heap.alloc(irq(), 300, 0, None, kind::RUN).unwrap();
        let b2 = heap.alloc(irq(), 723, 0, None, kind::RUN).unwrap();
        assert_eq!(b2.index, b1.index + 300);
        heap.free(irq(), b1, 300);
        heap.free(irq(), b2, 723);
        assert_eq!(heap.lock(irq()).parked_run, (id(b1), 1023));
        heap.check(irq());
        heap.unpark_all(&mut heap.lock(irq()));
        assert_eq!(heap.stats(irq()).free_blocks, blocks_of(11));
    }

    #[test]
    fn a_run_grows_to_the_region_end_and_no_further() {
        let (_a, heap) = one_block(10);
        let run = heap.alloc(irq(), 1019, 0, None, kind::RUN).unwrap();
        assert_eq!(run.index, 0);
        assert!(!heap.grow(irq(), run, 1019, 1025), "past the region's end");
        assert!(heap.grow(irq(), run, 1019, 1024), "to the region's end");
        assert_eq!(heap.stats(irq()).free_pages, 0);
        heap.shrink(irq(), run, 1024, 1019);
        assert_eq!(heap.stats(irq()).free_pages, 5);
        // The next run of an odd length starts where this one ended
        // (next fit) only if it fits before the region's end.
        let next = heap.alloc(irq(), 7, 0, None, kind::RUN);
        assert!(next.is_none(), "7 pages do not fit in the last 5");
        let next = heap.alloc(irq(), 5, 0, None, kind::RUN).unwrap();
        assert_eq!(next.index, 1019);
        heap.free(irq(), next, 5);
        heap.free(irq(), run, 1019);
        heap.unpark_all(&mut heap.lock(irq()));
        heap.check(irq());
        assert_eq!(heap.stats(irq()).free_blocks, blocks_of(10));
    }

    #[test]
    fn bad_regions_are_errors() {
        let mut a = Arena::new(64);
        let heap = PageHeap::new();
        let r = a.range(0, 32);
        // SAFETY: the arena is a live host buffer, identity-mapped, used by this heap only.
        unsafe { heap.add_region(irq(), r) }.unwrap();
        let overlapping = PhysRange::new(
            PhysAddr::new(r.end.as_u64() - 1),
            PhysAddr::new(r.end.as_u64() + 8192),
        );
        let tiny = PhysRange::new(
            PhysAddr::new(r.end.as_u64() + 1),
            PhysAddr::new(r.end.as_u64() + 4000),
        );
        let inverted = PhysRange::new(PhysAddr::new(0x5000), PhysAddr::new(0x4000));
        let one = a.range(40, 1);
        let add = |range| {
            // SAFETY: every one of these ranges is rejected before memory is
            // touched (checked by the assertions below).
            unsafe { heap.add_region(irq(), range) }
        };
        assert!(matches!(add(overlapping), Err(HeapError::Overlap { .. })));
        assert_eq!(add(tiny), Err(HeapError::EmptyRegion(tiny)));
        assert_eq!(add(inverted), Err(HeapError::EmptyRegion(inverted)));
        assert_eq!(add(one), Err(HeapError::TooSmall(one)));
        let high = PageHeap::new();
        high.set_offset(PhysOffset::new(0xffff_8000_0000_0000));
        let huge = PhysRange::new(
            PhysAddr::new(0x8000_0000_0000),
            PhysAddr::new(0x8000_0001_0000),
        );
        // SAFETY: rejected before any memory is touched.
        let r = unsafe { high.add_region(irq(), huge) };
        assert!(matches!(r, Err(HeapError::AddressOverflow { .. })), "{r:?}");
        heap.check(irq());
    }
}
