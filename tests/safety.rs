//! Calls in orders and from contexts that must neither corrupt nor hang
//! the heap: remote drains against a non-preemptive owner, drains and
//! panics inside a claimed cache, pages freed twice through two paths,
//! the early arena's lock, `init`'s report, failures that cannot be helped
//! and the grow handler. Tests that could hang run under a watchdog.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use strata_alloc::{Drain, Heap, HeapError, PageRequest, PhysAddr, PhysRange, Platform};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// Runs `f` on a thread and fails if it does not finish within `secs`.
fn watchdog<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the heap hung (watchdog expired)")
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

// ---- a non-preemptive owner against a remote drain ---------------------------

thread_local! {
    static NP_CPU: Cell<usize> = const { Cell::new(0) };
}

/// Non-preemptive: each thread is its own CPU and never migrates.
struct NonPreemptive;

impl Platform for NonPreemptive {
    type IrqGuard = ();
    const NON_PREEMPTIVE: bool = true;
    fn cpu_id() -> usize {
        NP_CPU.with(Cell::get)
    }
    fn disable_interrupts() {}
}

/// CPU 0 churns 32-byte objects while another CPU keeps calling
/// `drain_cpu(0)`. The owner claims with a plain load and store, so the
/// drainer must never claim that cache; it asks instead, and the owner
/// drains itself. Every live block keeps its contents and no two overlap.
#[test]
fn remote_drain_never_races_a_non_preemptive_owner() {
    watchdog(120, remote_drain_against_owner);
}

fn remote_drain_against_owner() {
    let arena = Box::leak(Box::new(Arena::new(16 * MIB)));
    let heap: &'static Heap<NonPreemptive> = Box::leak(heap_over(2, &[arena.whole()]));
    let start = heap.stats().free_pages();
    let stop = Box::leak(Box::new(AtomicBool::new(false)));
    let requested = Box::leak(Box::new(AtomicUsize::new(0)));
    std::thread::scope(|s| {
        s.spawn(|| {
            NP_CPU.with(|c| c.set(1));
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(heap.drain_cpu(0), Drain::Requested);
                requested.fetch_add(1, Ordering::Relaxed);
            }
        });
        s.spawn(|| {
            NP_CPU.with(|c| c.set(0));
            let mut rng = Rng(7);
            let mut live = Live::default();
            let mut blocks = Vec::new();
            let l = layout(32, 8);
            for i in 0..400_000u64 {
                if blocks.len() < 600 && (rng.below(2) == 0 || blocks.is_empty()) {
                    // SAFETY: non-zero size.
                    let p = unsafe { heap.alloc(l) };
                    assert!(!p.is_null());
                    live.insert(p, l, i);
                    fill(p, 32, i);
                    blocks.push((p, i));
                } else {
                    let (p, seed) = blocks.swap_remove(rng.below(blocks.len() as u64) as usize);
                    verify(p, 32, seed);
                    live.remove(p);
                    // SAFETY: live.
                    unsafe { heap.dealloc(p, l) };
                }
            }
            for (p, seed) in blocks {
                verify(p, 32, seed);
                // SAFETY: live.
                unsafe { heap.dealloc(p, l) };
            }
            stop.store(true, Ordering::Relaxed);
            assert_eq!(heap.drain_cpu(0), Drain::Drained);
        });
    });
    assert!(requested.load(Ordering::Relaxed) > 0);
    // The owner stopped (joined): another CPU may drain it now.
    // SAFETY: CPU 0's thread has finished; joining it ordered its work
    // before this call.
    assert!(matches!(
        unsafe { heap.drain_stopped_cpu(1) },
        Drain::Drained
    ));
    heap.reclaim();
    heap.check();
    assert_eq!(heap.stats().free_pages(), start);
}

/// A drain asked for from another CPU happens on the owner's next refill
/// or flush: the idle objects of the cache come back to the page heap.
#[test]
fn requested_drain_is_done_by_the_owner() {
    let arena = Arena::new(16 * MIB);
    let heap = heap_over::<NonPreemptive>(2, &[arena.whole()]);
    NP_CPU.with(|c| c.set(0));
    let l = layout(64, 8);
    let ptrs: Vec<_> = (0..500).map(|_| unsafe { heap.alloc(l) }).collect();
    for &p in &ptrs {
        // SAFETY: live.
        unsafe { heap.dealloc(p, l) };
    }
    assert!(heap.stats().cached_objects > 0);
    NP_CPU.with(|c| c.set(1));
    assert_eq!(heap.drain_cpu(0), Drain::Requested);
    NP_CPU.with(|c| c.set(0));
    // A 2000-byte class's stack is empty: this refill honours the request.
    // SAFETY: non-zero size.
    let p = unsafe { heap.alloc(layout(2000, 8)) };
    let s = heap.stats();
    assert_eq!(
        s.per_cpu[0].cached_objects,
        s.per_cpu[0].cached_objects.min(16),
        "{s}"
    );
    assert!(s.classes.iter().all(|c| c.objects_out <= 16), "{s}");
    // SAFETY: live.
    unsafe { heap.dealloc(p, layout(2000, 8)) };
}

// ---- drains and panics inside a claimed cache ---------------------------------

static INTERRUPTED: Heap<DrainInHandler> = Heap::new();
static HANDLER_DRAINS: AtomicUsize = AtomicUsize::new(0);
static PANIC_IN_CLAIM: AtomicBool = AtomicBool::new(false);
static DRAIN_IN_CLAIM: AtomicBool = AtomicBool::new(false);

/// One CPU whose "interrupt" (the claim hook) drains its own cache, or
/// panics, while the interrupted operation holds it.
struct DrainInHandler;

impl Platform for DrainInHandler {
    type IrqGuard = ();
    const NON_PREEMPTIVE: bool = true;
    fn cpu_id() -> usize {
        0
    }
    fn disable_interrupts() {}
    fn cache_claimed() {
        if DRAIN_IN_CLAIM.swap(false, Ordering::Relaxed) {
            assert_eq!(INTERRUPTED.drain_cpu(0), Drain::Requested);
            HANDLER_DRAINS.fetch_add(1, Ordering::Relaxed);
        }
        if PANIC_IN_CLAIM.swap(false, Ordering::Relaxed) {
            panic!("an interrupt handler panicked");
        }
    }
}

/// `drain_cpu(n)` from an interrupt on CPU n while the interrupted code
/// holds n's cache returns at once (it used to spin for ever), and a panic
/// while the cache is claimed releases the claim.
#[test]
fn drain_inside_a_claim_and_panic_inside_a_claim() {
    watchdog(60, || {
        let arena = Box::leak(Box::new(Arena::new(8 * MIB)));
        // SAFETY: the leaked arena is used by this heap only.
        unsafe { INTERRUPTED.init(0, 1, &[arena.whole()]) }.unwrap();
        let l = layout(48, 8);
        // SAFETY: non-zero size.
        let p = unsafe { INTERRUPTED.alloc(l) };
        DRAIN_IN_CLAIM.store(true, Ordering::Relaxed);
        // SAFETY: live.
        unsafe { INTERRUPTED.dealloc(p, l) };
        assert_eq!(HANDLER_DRAINS.load(Ordering::Relaxed), 1);
        PANIC_IN_CLAIM.store(true, Ordering::Relaxed);
        let r = std::panic::catch_unwind(|| {
            // SAFETY: non-zero size.
            unsafe { INTERRUPTED.alloc(l) }
        });
        assert!(r.is_err());
        // The claim was released by the unwinding: the cache is usable and
        // drainable again.
        assert_eq!(INTERRUPTED.drain_cpu(0), Drain::Drained);
        // SAFETY: non-zero size.
        let q = unsafe { INTERRUPTED.alloc(l) };
        assert!(!q.is_null());
        // SAFETY: live.
        unsafe { INTERRUPTED.dealloc(q, l) };
        assert_eq!(INTERRUPTED.stats().per_cpu[0].fallbacks, 0);
    });
}

// ---- one page, two frees ------------------------------------------------------

/// A page freed with `free_pages` sits on the CPU's page list; freeing it
/// again through `dealloc` (a large layout) must panic, not hand it out
/// twice.
#[test]
#[should_panic(expected = "no block is allocated there")]
fn page_on_a_cpu_list_cannot_be_freed_by_dealloc() {
    let arena = Arena::new(4 * MIB);
    let heap = heap_over::<TestCpu>(1, &[arena.whole()]);
    set_cpu(0);
    let page = heap.alloc_pages(PageRequest::new(1)).unwrap();
    // SAFETY: a live one-page run.
    unsafe { heap.free_pages(page.phys, 1) };
    // SAFETY: the test's point: a second free, which must be refused.
    unsafe { heap.dealloc(page.virt.as_mut_ptr(), layout(16, 8192)) };
}

/// The same through `realloc`, which used to grow the cached page in
/// place.
#[test]
#[should_panic(expected = "no block is allocated there")]
fn page_on_a_cpu_list_cannot_be_reallocated() {
    let arena = Arena::new(4 * MIB);
    let heap = heap_over::<TestCpu>(1, &[arena.whole()]);
    set_cpu(0);
    let page = heap.alloc_pages(PageRequest::new(1)).unwrap();
    // SAFETY: a live one-page run.
    unsafe { heap.free_pages(page.phys, 1) };
    // SAFETY: the test's point: a realloc of a freed page, to be refused.
    unsafe { heap.realloc(page.virt.as_mut_ptr(), layout(4096, 8192), 8192) };
}

/// Two CPUs free one page at once, one with `free_pages` (onto its page
/// list), one with `dealloc` (to the page heap): exactly one succeeds, the
/// other panics, and the heap stays consistent.
#[test]
fn one_page_freed_by_two_cpus_at_once() {
    let arena = Arena::new(8 * MIB);
    let heap: &'static Heap<TestCpu> = Box::leak(heap_over(2, &[arena.whole()]));
    let start = heap.stats().free_pages();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let barrier = std::sync::Barrier::new(2);
    let mut wins = [0usize; 2];
    for round in 0..300 {
        set_cpu(0);
        let page = heap.alloc_pages(PageRequest::new(1)).unwrap();
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                set_cpu(0);
                barrier.wait();
                // SAFETY: racing a second free on purpose; one must panic.
                std::panic::catch_unwind(AssertUnwindSafe(|| unsafe {
                    heap.free_pages(page.phys, 1)
                }))
                .is_ok()
            });
            let b = s.spawn(|| {
                set_cpu(1);
                barrier.wait();
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    // SAFETY: as above.
                    unsafe { heap.dealloc(page.virt.as_mut_ptr(), layout(16, 8192)) }
                }))
                .is_ok()
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(
            a != b,
            "round {round}: both frees {}",
            if a { "succeeded" } else { "failed" }
        );
        wins[a as usize] += 1;
    }
    std::panic::set_hook(prev);
    assert!(heap.drain_cpu(0).is_drained() || heap.drain_cpu(0) == Drain::Requested);
    // SAFETY: both test threads finished (joined).
    unsafe {
        heap.drain_stopped_cpu(0);
        heap.drain_stopped_cpu(1);
    }
    heap.check();
    assert_eq!(heap.stats().free_pages(), start, "wins {wins:?}");
}

// ---- the early arena's lock -----------------------------------------------------

thread_local! {
    static MASKS: Cell<usize> = const { Cell::new(0) };
}

/// Counts how often interrupts were masked on this thread.
struct CountMasks;

impl Platform for CountMasks {
    type IrqGuard = ();
    fn cpu_id() -> usize {
        0
    }
    fn disable_interrupts() {
        MASKS.with(|m| m.set(m.get() + 1));
    }
}

/// The early arena takes its lock with interrupts masked, like every lock
/// of the heap: an interrupt handler allocating from it cannot spin on the
/// lock held by the code it interrupted.
#[test]
fn early_arena_is_used_with_interrupts_masked() {
    let heap = Box::leak(Box::new(Heap::<CountMasks>::new()));
    let arena: &'static mut [std::mem::MaybeUninit<u8>] =
        Box::leak(vec![std::mem::MaybeUninit::new(0u8); 64 * 1024].into_boxed_slice());
    assert!(heap.init_early(arena));
    let l = layout(100, 8);
    for _ in 0..3 {
        let before = MASKS.with(Cell::get);
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(l) };
        assert!(!p.is_null());
        assert!(
            MASKS.with(Cell::get) > before,
            "early alloc without masking"
        );
        let before = MASKS.with(Cell::get);
        // SAFETY: live.
        unsafe { heap.dealloc(p, l) };
        assert!(MASKS.with(Cell::get) > before, "early free without masking");
    }
}

// ---- init tells the truth ------------------------------------------------------

/// `Ok` means the heap can allocate; whether it has per-CPU caches is in
/// the report. A heap too small for the caches' storage works without
/// them; a large one gets them.
#[test]
fn init_report_is_true_for_small_and_large_heaps() {
    for (pages, cpus, cached) in [(2, 1, 0), (17, 1, 0), (16, 1, 0), (64, 4, 0), (2048, 4, 4)] {
        let arena = Arena::new(pages * PAGE + PAGE);
        let base = arena.base().next_multiple_of(PAGE);
        let range = PhysRange::new(
            PhysAddr::new(base as u64),
            PhysAddr::new((base + pages * PAGE) as u64),
        );
        let heap = Box::new(Heap::<TestCpu>::new());
        set_cpu(0);
        // SAFETY: the range lies in the arena, which outlives the heap.
        let report = unsafe { heap.init(0, cpus, &[range]) }
            .unwrap_or_else(|e| panic!("{pages} pages: {e}"));
        assert_eq!(report.cached_cpus, cached, "{pages} pages, {cpus} CPUs");
        assert_eq!(report.free_pages, heap.stats().free_pages());
        // SAFETY: non-zero size.
        let p = unsafe { heap.alloc(layout(16, 8)) };
        assert!(!p.is_null(), "{pages} pages: no 16-byte block");
        // SAFETY: live.
        unsafe { heap.dealloc(p, layout(16, 8)) };
    }
}

/// A region that overlaps the early arena is refused, by `init` and by
/// `add_region`.
#[test]
fn regions_overlapping_the_early_arena_are_refused() {
    let arena = Box::leak(Box::new(Arena::new(8 * MIB)));
    let heap = Box::leak(Box::new(Heap::<TestCpu>::new()));
    // SAFETY: the first MiB of the leaked arena, given to nothing else.
    let early: &'static mut [std::mem::MaybeUninit<u8>] = unsafe {
        std::slice::from_raw_parts_mut(arena.base() as *mut std::mem::MaybeUninit<u8>, MIB)
    };
    assert!(heap.init_early(early));
    let bad = arena.range(MIB / 2, 2 * MIB);
    // SAFETY: refused before anything is touched.
    assert_eq!(
        unsafe { heap.init(0, 1, &[bad]) },
        Err(HeapError::OverlapsEarlyArena(bad))
    );
    // SAFETY: the rest of the arena is unused.
    unsafe { heap.init(0, 1, &[arena.range(2 * MIB, 2 * MIB)]) }.unwrap();
    // SAFETY: refused before anything is touched.
    assert_eq!(
        unsafe { heap.add_region(bad) },
        Err(HeapError::OverlapsEarlyArena(bad))
    );
    // SAFETY: unused part of the arena.
    unsafe { heap.add_region(arena.range(5 * MIB, 2 * MIB)) }.unwrap();
}

// ---- failures that nothing can help, and the grow handler ------------------------

static GROW_CALLS: AtomicUsize = AtomicUsize::new(0);

fn counting_handler(_: &Heap<TestCpu>, _: Layout) -> bool {
    GROW_CALLS.fetch_add(1, Ordering::SeqCst);
    false
}

/// A request no region can hold fails at once: the caches keep their
/// objects and the grow handler is not asked; a request with a physical
/// limit does not ask the grow handler either.
#[test]
fn hopeless_and_limited_failures_do_not_grow_or_drain() {
    let arena = Arena::new(8 * MIB);
    let heap = heap_over::<TestCpu>(1, &[arena.whole()]);
    set_cpu(0);
    heap.set_grow_handler(counting_handler);
    let l = layout(64, 8);
    let ptrs: Vec<_> = (0..100).map(|_| unsafe { heap.alloc(l) }).collect();
    for &p in &ptrs {
        // SAFETY: live.
        unsafe { heap.dealloc(p, l) };
    }
    let cached = heap.stats().cached_objects;
    assert!(cached > 0);
    let before = GROW_CALLS.load(Ordering::SeqCst);
    assert!(heap.alloc_pages(PageRequest::new(1 << 27)).is_none());
    assert_eq!(
        heap.stats().cached_objects,
        cached,
        "a hopeless request drained the caches"
    );
    let base = heap.regions().next().unwrap().start;
    let limited = PageRequest::new(8).below(PhysAddr::new(base.as_u64() + 4 * PAGE as u64));
    assert!(heap.alloc_pages(limited).is_none());
    assert_eq!(
        GROW_CALLS.load(Ordering::SeqCst),
        before,
        "grow handler asked in vain"
    );
    // An ordinary failure still asks it.
    // SAFETY: non-zero size.
    assert!(unsafe { heap.alloc(layout(64 * MIB, 4096)) }.is_null());
    assert_eq!(GROW_CALLS.load(Ordering::SeqCst), before + 1);
}

static REPLACED: AtomicUsize = AtomicUsize::new(0);

fn replacing_handler(heap: &Heap<TestCpu>, _: Layout) -> bool {
    heap.set_grow_handler(replacement_handler);
    false
}

fn replacement_handler(_: &Heap<TestCpu>, _: Layout) -> bool {
    REPLACED.fetch_add(1, Ordering::SeqCst);
    false
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn panicking_handler(_: &Heap<TestCpu>, _: Layout) -> bool {
    PANICS.fetch_add(1, Ordering::SeqCst);
    panic!("grow handler panicked");
}

/// A handler set while another runs is the one asked next; a handler that
/// panics is still set afterwards.
#[test]
fn grow_handler_survives_replacement_and_panics() {
    let arena = Arena::new(4 * MIB);
    let heap = heap_over::<TestCpu>(1, &[arena.whole()]);
    set_cpu(0);
    let huge = layout(16 * MIB, 4096);
    heap.set_grow_handler(replacing_handler);
    // SAFETY: non-zero size.
    assert!(unsafe { heap.alloc(huge) }.is_null());
    // SAFETY: non-zero size.
    assert!(unsafe { heap.alloc(huge) }.is_null());
    assert_eq!(
        REPLACED.load(Ordering::SeqCst),
        1,
        "the newer handler was overwritten"
    );
    heap.set_grow_handler(panicking_handler);
    for round in 1..=2 {
        // SAFETY: non-zero size.
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| unsafe { heap.alloc(huge) }));
        assert!(r.is_err());
        assert_eq!(PANICS.load(Ordering::SeqCst), round, "the handler was lost");
    }
}

// ---- the claim on a preemptive platform -----------------------------------------

static PREEMPTED: Heap<PreemptedInClaim> = Heap::new();
static NEST: AtomicBool = AtomicBool::new(false);

/// A preemptive platform (every claim a compare-exchange) whose "interrupt"
/// allocates and frees through the same cache while the interrupted
/// operation holds it.
struct PreemptedInClaim;

impl Platform for PreemptedInClaim {
    type IrqGuard = ();
    fn cpu_id() -> usize {
        0
    }
    fn disable_interrupts() {}
    fn cache_claimed() {
        if NEST.swap(false, Ordering::Relaxed) {
            let l = layout(24, 8);
            // SAFETY: non-zero size.
            let p = unsafe { PREEMPTED.alloc(l) };
            assert!(!p.is_null());
            // SAFETY: live.
            unsafe { PREEMPTED.dealloc(p, l) };
        }
    }
}

/// On a preemptive platform too, a context that finds the cache claimed
/// takes the central path: the claim excludes.
#[test]
fn preemptive_claim_excludes_a_nested_context() {
    let arena = Box::leak(Box::new(Arena::new(8 * MIB)));
    // SAFETY: the leaked arena is used by this heap only.
    unsafe { PREEMPTED.init(0, 1, &[arena.whole()]) }.unwrap();
    let l = layout(24, 8);
    for _ in 0..10 {
        NEST.store(true, Ordering::Relaxed);
        // SAFETY: non-zero size.
        let p = unsafe { PREEMPTED.alloc(l) };
        // SAFETY: live.
        unsafe { PREEMPTED.dealloc(p, l) };
    }
    let s = PREEMPTED.stats();
    assert_eq!(s.per_cpu[0].fallbacks, 20, "{s}");
    // Nothing is live: every object out of its span is cached.
    let out: u64 = s.classes.iter().map(|c| c.objects_out).sum();
    assert_eq!(out, s.cached_objects, "{s}");
}
