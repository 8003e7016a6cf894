//! Host mode: strata as the global allocator of an ordinary program.
//!
//! [`HostHeap`] runs the same heap a kernel runs, over memory mapped from
//! the operating system, so strata can serve a whole `std` program (a test
//! bed, a benchmark, a user-space tool) with every thread on its own CPU
//! cache:
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: strata_alloc::HostHeap = strata_alloc::HostHeap::new();
//!
//! fn main() {
//!     let v: Vec<String> = (0..100).map(|i| i.to_string()).collect();
//!     assert_eq!(v[42], "42");
//!     println!("{}", GLOBAL.stats());
//! }
//! ```
//!
//! # How it works
//!
//! * Memory comes in *chunks* mapped with `mmap` (anonymous, private,
//!   `MAP_NORESERVE`: pages are committed by the OS on first touch). Each
//!   chunk is a power of two in size and aligned to its size, so the buddy
//!   heap sees it as one block. It becomes a region of the inner
//!   [`Heap`]: the first chunk through [`Heap::init`] (identity mapping,
//!   offset 0, [`HOST_CPUS`] CPU caches), the next ones through
//!   [`Heap::add_region`].
//! * Nothing is mapped until the first allocation. When an allocation
//!   fails, the caller takes the growth lock, tries again (another thread
//!   may have grown the heap meanwhile), and otherwise maps a new chunk:
//!   the chunk size doubles from the configured size up to
//!   [`HOST_CHUNK_MAX`], and a chunk is always large enough for the request
//!   that needed it. So several threads racing on the very first allocation
//!   map exactly one chunk, and the heap is initialised exactly once.
//! * Nothing on these paths allocates (`mmap`, a spin lock that yields to
//!   the OS scheduler while it waits, a `const`-initialised thread-local),
//!   so the allocator never re-enters itself.
//! * Chunks are never unmapped while the heap lives (the heap has no region
//!   removal); dropping a `HostHeap` that is not a `static` unmaps them all.
//!
//! # Limits
//!
//! At most [`MAX_REGIONS`] chunks. With the default 64 MiB first chunk
//! that is about 60 GiB before allocations fail (null, which `std` reports
//! as an allocation failure). Unix only (it needs `mmap`).

extern crate std;

use crate::addr::{PhysAddr, PhysRange, PAGE_SIZE};
use crate::buddy::MAX_REGIONS;
use crate::heap::Heap;
use crate::platform::Platform;
use crate::stats::HeapStats;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::mutex::{SpinMutex, SpinMutexGuard};

/// CPU caches of a [`HostHeap`]: threads share them round-robin.
///
/// 64 covers the cores of most machines a host program runs on; more
/// threads than this share caches (correctly, see [`HostCpus`]).
pub const HOST_CPUS: usize = 64;

/// The default size of a [`HostHeap`]'s first chunk.
///
/// Large enough that a small program never maps a second chunk, small
/// enough that the metadata zeroed at start (16 bytes a page, 256 KiB) is
/// quick.
pub const HOST_CHUNK_DEFAULT: usize = 64 << 20;

/// The smallest first chunk a [`HostHeap`] maps. The storage of its
/// [`HOST_CPUS`] CPU caches is carved from the first chunk (64 ×
/// [`SLOTS_PER_CPU`](crate::cpu_cache::SLOTS_PER_CPU) slots of 8 bytes,
/// about 2.7 MiB); 8 MiB leaves more than that for objects.
pub const HOST_CHUNK_MIN: usize = 8 << 20;

/// The largest chunk mapped for growth alone (a single larger request
/// still gets a chunk that fits it).
pub const HOST_CHUNK_MAX: usize = 1 << 30;

/// The [`Platform`] of a [`HostHeap`]: threads numbered in the order they
/// first allocate, modulo [`HOST_CPUS`].
///
/// Unlike [`ThreadCpus`](crate::ThreadCpus), whose ids keep growing (so
/// the 65th thread of a program and every later one would take the shared
/// central path), ids wrap around: a program that spawns and ends threads
/// all day keeps using CPU caches, and a cache left behind by a thread that
/// ended is reused by a later one instead of holding its objects forever.
/// Two live threads may share an id; that is correct because
/// [`NON_PREEMPTIVE`](Platform::NON_PREEMPTIVE) is `false` (a cache is
/// claimed with an atomic compare-exchange, and the loser takes the central path). There
/// are no interrupts to mask.
#[derive(Debug)]
pub struct HostCpus;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// This thread's CPU id, `usize::MAX` until its first allocation.
    /// `const`-initialised and without a destructor: reading it never
    /// allocates and never fails, even while the thread exits.
    static THREAD_CPU: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl Platform for HostCpus {
    type IrqGuard = ();

    #[inline]
    fn cpu_id() -> usize {
        THREAD_CPU
            .try_with(|id| {
                let mut cpu = id.get();
                if cpu == usize::MAX {
                    cpu = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % HOST_CPUS;
                    id.set(cpu);
                }
                cpu
            })
            .unwrap_or(usize::MAX)
    }

    #[inline(always)]
    fn disable_interrupts() {}
}

/// The chunks mapped so far, guarded by the growth lock.
struct Chunks {
    /// `(address, length)` of each chunk, for `Drop`.
    mapped: [(usize, usize); MAX_REGIONS],
    count: usize,
}

/// A strata heap over memory mapped from the operating system: a
/// `GlobalAlloc` for ordinary `std` programs. See the
/// [module docs](self).
///
/// It is also an `Allocator` (with the `allocator-api2` or `nightly`
/// feature), so a program can keep one collection in a heap of its own.
///
/// # Guarantees
///
/// As for [`Heap`]: out of memory (the OS refuses a mapping, or
/// [`MAX_REGIONS`] chunks are in use) returns null; a free of a pointer
/// that is not a live block of that layout panics with the address.
///
/// # Time Complexity
/// As for [`Heap`]'s `GlobalAlloc` impl. An allocation that finds the heap
/// full also maps a chunk: one `mmap`, and O(pages of the chunk / 256) to
/// zero its page metadata; chunks double in size, so that happens
/// O(log(memory)) times in a program's life.
pub struct HostHeap {
    heap: Heap<HostCpus>,
    chunk: usize,
    grow: SpinMutex<Chunks>,
    mapped_bytes: AtomicUsize,
    chunk_count: AtomicUsize,
}

impl Default for HostHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl HostHeap {
    /// A heap that maps a first chunk of [`HOST_CHUNK_DEFAULT`] bytes at
    /// its first allocation. `const`, for a `static`.
    pub const fn new() -> Self {
        Self::with_chunk_size(HOST_CHUNK_DEFAULT)
    }

    /// A heap whose first chunk is `bytes`, rounded up to a power of two
    /// and at least [`HOST_CHUNK_MIN`] (at most [`HOST_CHUNK_MAX`]).
    pub const fn with_chunk_size(bytes: usize) -> Self {
        let bytes = if bytes < HOST_CHUNK_MIN {
            HOST_CHUNK_MIN
        } else if bytes > HOST_CHUNK_MAX {
            HOST_CHUNK_MAX
        } else {
            bytes.next_power_of_two()
        };
        HostHeap {
            heap: Heap::new(),
            chunk: bytes,
            grow: SpinMutex::new(Chunks {
                mapped: [(0, 0); MAX_REGIONS],
                count: 0,
            }),
            mapped_bytes: AtomicUsize::new(0),
            chunk_count: AtomicUsize::new(0),
        }
    }

    /// The inner heap: its page API, [`drain_cpu`](Heap::drain_cpu),
    /// [`reclaim`](Heap::reclaim), [`regions`](Heap::regions).
    pub fn heap(&self) -> &Heap<HostCpus> {
        &self.heap
    }

    /// A snapshot of the heap's counters (all zero before the first
    /// allocation).
    ///
    /// # Time Complexity
    /// O(size classes + CPUs).
    pub fn stats(&self) -> HeapStats {
        self.heap.stats()
    }

    /// Bytes mapped from the OS so far (address space; the OS commits
    /// pages only when they are touched).
    pub fn mapped_bytes(&self) -> usize {
        self.mapped_bytes.load(Ordering::Relaxed)
    }

    /// Chunks mapped from the OS so far (regions of the inner heap).
    pub fn chunks(&self) -> usize {
        self.chunk_count.load(Ordering::Relaxed)
    }

    /// The growth lock. Waiting yields to the OS scheduler: the holder may
    /// be a preempted thread inside `mmap`.
    fn lock(&self) -> SpinMutexGuard<'_, Chunks> {
        loop {
            if let Some(guard) = self.grow.try_lock() {
                return guard;
            }
            std::thread::yield_now();
        }
    }

    /// The allocation `attempt` failed: grow the heap until it succeeds or
    /// no more memory can be mapped.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, layout: Layout, attempt: impl Fn() -> *mut u8) -> *mut u8 {
        loop {
            let mut chunks = self.lock();
            // Another thread may have grown the heap while we waited.
            let ptr = attempt();
            if !ptr.is_null() {
                return ptr;
            }
            if !self.map_chunk(&mut chunks, layout) {
                return null_mut();
            }
            drop(chunks);
            // Other threads may take the new chunk first; then go round.
            let ptr = attempt();
            if !ptr.is_null() {
                return ptr;
            }
        }
    }

    /// The size of the next chunk: the growth schedule, or a chunk whose
    /// lower half is one block that fits `layout` (the page metadata sits
    /// at the top of a region).
    fn chunk_size(&self, count: usize, layout: Layout) -> Option<usize> {
        let scheduled = self
            .chunk
            .checked_mul(1 << count.min(8))
            .map_or(HOST_CHUNK_MAX, |c| c.min(HOST_CHUNK_MAX));
        let need = layout.size().max(layout.align()).max(PAGE_SIZE);
        let fits = need.checked_next_power_of_two()?.checked_mul(2)?;
        Some(scheduled.max(fits))
    }

    /// Maps one more chunk and hands it to the heap. `false` if the OS
    /// refuses or the heap holds no more regions.
    fn map_chunk(&self, chunks: &mut Chunks, layout: Layout) -> bool {
        if chunks.count == MAX_REGIONS {
            return false;
        }
        let Some(size) = self.chunk_size(chunks.count, layout) else {
            return false;
        };
        let Some(base) = map_aligned(size) else {
            return false;
        };
        let range = PhysRange::new(
            PhysAddr::new(base as u64),
            PhysAddr::new((base + size) as u64),
        );
        let added = if chunks.count == 0 {
            // SAFETY: the chunk is fresh private memory, mapped read-write
            // at its own address (offset 0), and stays mapped for as long as
            // the heap lives (unmapped only in `drop`).
            unsafe { self.heap.init(0, HOST_CPUS, &[range]) }.is_ok()
        } else {
            // SAFETY: as above; the chunk overlaps no earlier one (the OS
            // never maps one address twice).
            unsafe { self.heap.add_region(range) }.is_ok()
        };
        if !added {
            // SAFETY: mapped above, handed to nobody.
            unsafe { unmap(base, size) };
            return false;
        }
        chunks.mapped[chunks.count] = (base, size);
        chunks.count += 1;
        self.mapped_bytes.fetch_add(size, Ordering::Relaxed);
        self.chunk_count.store(chunks.count, Ordering::Relaxed);
        true
    }
}

impl Drop for HostHeap {
    fn drop(&mut self) {
        let chunks = self.grow.get_mut();
        for &(base, len) in &chunks.mapped[..chunks.count] {
            // SAFETY: `&mut self`: no borrow of the heap is alive, so no
            // collection still holds its blocks (raw `GlobalAlloc` users
            // must not use blocks past the heap's life, as for any
            // allocator); each chunk was mapped by `map_chunk`.
            unsafe { unmap(base, len) };
        }
    }
}

/// Maps address space without charging it to the commit limit up front:
/// Linux and Android honour the flag under their default overcommit policy.
/// Elsewhere it is 0 (some systems have no such flag); anonymous pages are
/// still only backed when first touched.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MAP_NORESERVE: libc::c_int = libc::MAP_NORESERVE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MAP_NORESERVE: libc::c_int = 0;

/// Maps `size` bytes (a power of two, at least a page) aligned to `size`:
/// maps twice as much and unmaps the unaligned ends.
fn map_aligned(size: usize) -> Option<usize> {
    let span = size.checked_mul(2)?;
    // SAFETY: an anonymous private mapping at an address of the OS's
    // choosing; it aliases nothing.
    let raw = unsafe {
        libc::mmap(
            null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let start = raw as usize;
    let base = start.next_multiple_of(size);
    let (head, tail) = (base - start, start + span - (base + size));
    // SAFETY: the head and the tail lie inside the mapping just made and
    // outside `[base, base + size)`; `base - start` and `size` are multiples
    // of the page size, so both are page-aligned.
    unsafe {
        if head != 0 {
            unmap(start, head);
        }
        if tail != 0 {
            unmap(base + size, tail);
        }
    }
    Some(base)
}

/// Unmaps `[base, base + len)`.
///
/// # Safety
/// The range was mapped by [`map_aligned`] and nothing uses it any more.
unsafe fn unmap(base: usize, len: usize) {
    // SAFETY: from the caller. A failure (impossible for a range we mapped)
    // only leaks address space.
    unsafe { libc::munmap(base as *mut libc::c_void, len) };
}

// SAFETY: every block comes from the inner heap, whose `GlobalAlloc` impl
// upholds the contract; growing only adds regions. `realloc` falls back to
// allocate (with growth), copy and free, preserving the contents.
unsafe impl GlobalAlloc for HostHeap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller (non-zero size).
        let ptr = unsafe { self.heap.alloc(layout) };
        if !ptr.is_null() {
            return ptr;
        }
        // SAFETY: as above.
        self.alloc_slow(layout, || unsafe { self.heap.alloc(layout) })
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller (non-zero size).
        let ptr = unsafe { self.heap.alloc_zeroed(layout) };
        if !ptr.is_null() {
            return ptr;
        }
        // SAFETY: as above.
        self.alloc_slow(layout, || unsafe { self.heap.alloc_zeroed(layout) })
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller: a block of the inner heap.
        unsafe { self.heap.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let moved = unsafe { self.heap.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            return moved;
        }
        // The heap is full: grow it, then move the block ourselves.
        // SAFETY: `new_size` rounded up to the alignment does not overflow
        // `isize` (the caller's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: non-zero size (the caller's contract).
        let fresh = self.alloc_slow(new_layout, || unsafe { self.heap.alloc(new_layout) });
        if !fresh.is_null() {
            // SAFETY: two distinct live blocks of at least the shorter
            // length; the old one is still live (a failed realloc leaves it).
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                self.heap.dealloc(ptr, layout);
            }
        }
        fresh
    }
}

#[cfg(any(feature = "allocator-api2", feature = "nightly"))]
crate::allocator_api::impl_allocators!([], HostHeap);
