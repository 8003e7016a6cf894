//! Property tests: random inputs, shrunk to a minimal failing case.
//!
//! * `page_runs_*`: page API sequences (count, alignment, `below`) keep runs
//!   disjoint, aligned and under their limit, account free pages exactly,
//!   and give every page back.
//! * `size_classes_*`: for every size and alignment the class is large
//!   enough, a multiple of the alignment, and the smallest such; the heap
//!   routes the layout to that class.
//! * `realloc_*`: realloc keeps contents, and stays in place where the docs
//!   promise it.
//! * `mixed_sequences_match_the_model`: whole-heap op sequences checked by
//!   the model the fuzz target uses (`fuzz/harness.rs`).
//! * `threads_*`: a few host threads as CPUs freeing each other's blocks,
//!   small enough for Miri's data-race detector.
//!
//! Case counts keep the file under a few seconds in a debug build, and far
//! fewer cases run under Miri (`scripts/miri.sh`).

#[path = "../fuzz/harness.rs"]
mod harness;

use harness::{Arena, Config, Cpu, Op, OpCpu};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::mpsc;
use strata_alloc::size_class::{SizeClass, CLASSES};
use strata_alloc::{Heap, PageRequest, PhysAddr, PhysRange, MAX_SMALL, PAGE_SIZE};

/// `native` normally, `miri` under Miri (about 10⁴ times slower).
fn scaled(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

/// `native` cases normally, `miri` under Miri.
fn runner(native: u32, miri: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: if cfg!(miri) { miri } else { native },
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// A heap over all of `arena` (offset 0) with `max_cpus` caches.
fn heap_over(arena: &Arena, max_cpus: usize) -> Box<Heap<OpCpu>> {
    let heap = Box::new(Heap::<OpCpu>::new());
    let range = PhysRange::new(
        PhysAddr::new(arena.base() as u64),
        PhysAddr::new((arena.base() + arena.len()) as u64),
    );
    // SAFETY: the arena outlives the heap in every test and nothing else
    // uses it.
    unsafe { heap.init(0, max_cpus, &[range]) }.expect("init");
    heap
}

// ---- page runs ----------------------------------------------------------------

#[derive(Copy, Clone, Debug)]
enum PageOp {
    Alloc {
        count: usize,
        align_log2: u32,
        zeroed: bool,
        /// Limit in pages from the arena's base.
        below: Option<usize>,
    },
    Free(usize),
}

fn page_op(arena_pages: usize) -> impl Strategy<Value = PageOp> {
    prop_oneof![
        3 => (1usize..=64, 0u32..=6, any::<bool>(), prop::option::of(0..=arena_pages + 8)).prop_map(
            |(count, align_log2, zeroed, below)| PageOp::Alloc { count, align_log2, zeroed, below }
        ),
        2 => any::<usize>().prop_map(PageOp::Free),
    ]
}

#[test]
fn page_runs_are_disjoint_aligned_limited_and_counted_exactly() {
    const ARENA: usize = 2 << 20;
    let arena = Arena::new(ARENA);
    let heap = heap_over(&arena, 1);
    let start_free = heap.stats().free_pages();
    let base = arena.base() as u64;
    let ops = prop::collection::vec(page_op(ARENA / PAGE_SIZE), 1..scaled(60, 8));
    runner(512, 2)
        .run(&ops, |ops| {
            // (phys, count), by phys.
            let mut live: BTreeMap<u64, usize> = BTreeMap::new();
            for op in ops {
                let before = heap.stats().free_pages();
                match op {
                    PageOp::Alloc {
                        count,
                        align_log2,
                        zeroed,
                        below,
                    } => {
                        let align = 1usize << align_log2;
                        let mut req = PageRequest::new(count).align(align);
                        if zeroed {
                            req = req.zeroed();
                        }
                        let limit = below.map(|p| base + (p * PAGE_SIZE) as u64);
                        if let Some(l) = limit {
                            req = req.below(PhysAddr::new(l));
                        }
                        let Some(a) = heap.alloc_pages(req) else {
                            prop_assert_eq!(heap.stats().free_pages(), before);
                            if limit.is_none() {
                                // Nothing free could have served it.
                                let need =
                                    count.next_power_of_two().trailing_zeros().max(align_log2);
                                let blocks = heap.stats().pages.free_blocks;
                                prop_assert!(blocks[need as usize..].iter().all(|&b| b == 0));
                            }
                            continue;
                        };
                        let phys = a.phys.as_u64();
                        let end = phys + (count * PAGE_SIZE) as u64;
                        prop_assert_eq!(a.count, count);
                        prop_assert_eq!(phys % (align * PAGE_SIZE) as u64, 0);
                        prop_assert!(phys >= base && end <= base + ARENA as u64);
                        if let Some(l) = limit {
                            prop_assert!(end <= l, "{:#x}..{:#x} above limit {:#x}", phys, end, l);
                        }
                        if let Some((&p, &n)) = live.range(..=phys).next_back() {
                            prop_assert!(p + (n * PAGE_SIZE) as u64 <= phys, "overlap");
                        }
                        if let Some((&p, _)) = live.range(phys..).next() {
                            prop_assert!(end <= p, "overlap");
                        }
                        let ptr: *mut u64 = a.virt.as_mut_ptr();
                        for page in 0..count {
                            let word = page * PAGE_SIZE / 8;
                            if zeroed {
                                // SAFETY: inside the live run.
                                prop_assert_eq!(unsafe { ptr.add(word).read() }, 0);
                                // SAFETY: as above.
                                prop_assert_eq!(unsafe { ptr.add(word + 511).read() }, 0);
                            }
                            // SAFETY: as above.
                            unsafe { ptr.add(word).write(phys + page as u64) };
                        }
                        live.insert(phys, count);
                        prop_assert_eq!(heap.stats().free_pages(), before - count as u64);
                    }
                    PageOp::Free(pick) => {
                        if live.is_empty() {
                            continue;
                        }
                        let phys = *live.keys().nth(pick % live.len()).unwrap();
                        let count = live.remove(&phys).unwrap();
                        let ptr = phys as *mut u64;
                        for page in 0..count {
                            // SAFETY: inside the live run (offset 0).
                            let got = unsafe { ptr.add(page * PAGE_SIZE / 8).read() };
                            prop_assert_eq!(got, phys + page as u64, "run contents lost");
                        }
                        // SAFETY: a live run of `count` pages, unused now.
                        unsafe { heap.free_pages(PhysAddr::new(phys), count) };
                        prop_assert_eq!(heap.stats().free_pages(), before + count as u64);
                    }
                }
                heap.check();
            }
            for (phys, count) in live {
                // SAFETY: live runs, unused now.
                unsafe { heap.free_pages(PhysAddr::new(phys), count) };
            }
            heap.check();
            prop_assert_eq!(heap.stats().free_pages(), start_free, "pages lost");
            prop_assert_eq!(heap.stats().large_runs, 0);
            Ok(())
        })
        .unwrap();
}

// ---- size classes ---------------------------------------------------------------

#[test]
fn size_classes_are_smallest_aligned_fits_and_the_heap_uses_them() {
    let arena = Arena::new(1 << 20);
    let heap = heap_over(&arena, 1);
    let strategy = (
        prop_oneof![1usize..=MAX_SMALL + 64, 1usize..=256],
        0u32..=13,
    );
    runner(5000, 4)
        .run(&strategy, |(size, align_log2)| {
            let align = 1usize << align_log2;
            let Some(c) = SizeClass::for_layout(size, align) else {
                prop_assert!(
                    align > PAGE_SIZE || size.next_multiple_of(align) > MAX_SMALL,
                    "size {} align {} has no class",
                    size,
                    align
                );
                return Ok(());
            };
            prop_assert!(align <= PAGE_SIZE);
            let cs = c.size();
            prop_assert!(cs >= size, "class {} < size {}", cs, size);
            prop_assert_eq!(cs % align, 0, "class {} not a multiple of {}", cs, align);
            for smaller in &CLASSES[..c.index()] {
                let s = smaller.size as usize;
                prop_assert!(
                    s < size || s % align != 0,
                    "class {} fits {}/{} too",
                    s,
                    size,
                    align
                );
            }
            // The heap serves the layout from that class, aligned. On the
            // central path (no cache) one alloc takes exactly one object.
            let layout = Layout::from_size_align(size, align).unwrap();
            let before = heap.stats().classes[c.index()].objects_out;
            harness::with_cpu(usize::MAX, || {
                // SAFETY: non-zero size.
                let p = unsafe { heap.alloc(layout) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                assert_eq!(heap.stats().classes[c.index()].objects_out, before + 1);
                // SAFETY: just allocated with this layout.
                unsafe { heap.dealloc(p, layout) };
            });
            Ok(())
        })
        .unwrap();
}

// ---- realloc ----------------------------------------------------------------------

fn bytes(seed: u64, len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(move |i| (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 57)) as u8 ^ i as u8)
}

#[test]
fn realloc_keeps_contents_and_stays_in_place_when_promised() {
    let arena = Arena::new(8 << 20);
    let heap = heap_over(&arena, 1);
    let start_free = heap.stats().free_pages();
    let size = prop_oneof![
        1usize..=MAX_SMALL + 16,
        1usize..=scaled(256 << 10, 24 << 10)
    ];
    let strategy = (
        size.clone(),
        0u32..=13,
        prop::collection::vec(size, 1..scaled(6, 3)),
        any::<u64>(),
    );
    runner(512, 2)
        .run(&strategy, |(size, align_log2, new_sizes, seed)| {
            let align = 1usize << align_log2;
            let mut layout = Layout::from_size_align(size, align).unwrap();
            harness::with_cpu(0, || {
                // SAFETY: non-zero size.
                let mut p = unsafe { heap.alloc(layout) };
                assert!(!p.is_null());
                for (step, &new_size) in new_sizes.iter().enumerate() {
                    let seed = seed.wrapping_add(step as u64);
                    for (i, b) in bytes(seed, layout.size()).enumerate() {
                        // SAFETY: inside the live block.
                        unsafe { p.add(i).write(b) };
                    }
                    let old = SizeClass::for_layout(layout.size(), align);
                    let new = SizeClass::for_layout(new_size, align);
                    let old_pages = layout.size().div_ceil(PAGE_SIZE);
                    let new_pages = new_size.div_ceil(PAGE_SIZE);
                    // SAFETY: live with this layout; non-zero new size.
                    let q = unsafe { heap.realloc(p, layout, new_size) };
                    assert!(
                        !q.is_null(),
                        "realloc {} -> {} failed",
                        layout.size(),
                        new_size
                    );
                    assert_eq!(q as usize % align, 0);
                    if old.is_some() && old == new {
                        assert_eq!(q, p, "same class {old:?}: must stay in place");
                    }
                    if old.is_none() && new.is_none() && new_pages <= old_pages {
                        assert_eq!(
                            q, p,
                            "shrinking run {old_pages} -> {new_pages} pages: in place"
                        );
                    }
                    let keep = layout.size().min(new_size);
                    for (i, b) in bytes(seed, keep).enumerate() {
                        // SAFETY: inside the live block.
                        let got = unsafe { q.add(i).read() };
                        assert_eq!(
                            got,
                            b,
                            "realloc {} -> {new_size}: byte {i} lost",
                            layout.size()
                        );
                    }
                    p = q;
                    layout = Layout::from_size_align(new_size, align).unwrap();
                }
                // SAFETY: live with this layout.
                unsafe { heap.dealloc(p, layout) };
            });
            heap.drain_cpu(0);
            heap.reclaim();
            heap.check();
            prop_assert_eq!(heap.stats().free_pages(), start_free, "pages lost");
            Ok(())
        })
        .unwrap();
}

// ---- whole-heap sequences -----------------------------------------------------------

fn cpu() -> impl Strategy<Value = Cpu> {
    prop_oneof![8 => (0u8..6).prop_map(Cpu::Id), 1 => Just(Cpu::Max)]
}

fn byte_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 1usize..=512,
        4 => 1usize..=MAX_SMALL + 8,
        1 => 1usize..=harness::MAX_SIZE,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let align = prop_oneof![3 => 0u8..=3, 1 => 0u8..=harness::MAX_ALIGN_LOG2 as u8];
    prop_oneof![
        8 => (byte_size(), align.clone(), prop::bool::weighted(0.1), cpu())
            .prop_map(|(size, align_log2, zeroed, cpu)| Op::Alloc { size, align_log2, zeroed, cpu }),
        6 => (any::<u32>(), cpu()).prop_map(|(pick, cpu)| Op::Dealloc { pick, cpu }),
        3 => (any::<u32>(), byte_size(), cpu())
            .prop_map(|(pick, new_size, cpu)| Op::Realloc { pick, new_size, cpu }),
        2 => (0usize..=40, prop_oneof![Just(1usize), Just(2), Just(8), Just(3)], any::<bool>(),
              prop::option::of(0usize..(5 << 20)), cpu())
            .prop_map(|(count, align, zeroed, below, cpu)| Op::AllocPages { count, align, zeroed, below, cpu }),
        2 => (any::<u32>(), cpu()).prop_map(|(pick, cpu)| Op::FreePages { pick, cpu }),
        1 => cpu().prop_map(Op::DrainCpu),
        1 => Just(Op::Reclaim),
        1 => (0usize..(1 << 20), 0usize..(256 << 10)).prop_map(|(start, len)| Op::AddRegion { start, len }),
        1 => (byte_size(), align).prop_map(|(size, align_log2)| Op::Nested { size, align_log2 }),
        1 => Just(Op::NestedDrain),
        1 => (any::<u32>(), any::<u8>(), cpu()).prop_map(|(pick, how, cpu)| Op::Refused { pick, how, cpu }),
    ]
}

#[test]
fn mixed_sequences_match_the_model() {
    let config = (1usize..=3, 0usize..4096, 0usize..4096).prop_map(|(max_cpus, lo, hi)| Config {
        arena: 4 << 20,
        extra: 1 << 20,
        max_cpus,
        regions: vec![(lo, (4 << 20) - hi)],
    });
    let strategy = (config, prop::collection::vec(op(), 1..scaled(150, 10)));
    runner(512, 1)
        .run(&strategy, |(config, ops)| {
            harness::run(&config, &ops);
            Ok(())
        })
        .unwrap();
}

// ---- threads ----------------------------------------------------------------------

/// A block sent to another thread to free.
struct Sent(*mut u8, Layout);
// SAFETY: a block is plain memory owned by whoever holds the `Sent`.
unsafe impl Send for Sent {}

fn check_and_free(heap: &Heap<OpCpu>, Sent(p, layout): Sent) {
    let tag = p as usize as u8;
    // SAFETY: the block is live and at least one byte long.
    let (first, last) = unsafe { (p.read(), p.add(layout.size() - 1).read()) };
    assert_eq!((first, last), (tag, !tag), "block {p:p} corrupted");
    // SAFETY: live with this layout, owned by this thread now.
    unsafe { heap.dealloc(p, layout) };
}

/// Three threads on CPU ids 0, 1 and 2 (past `max_cpus` = 2, so the shared
/// path), each allocating small and large blocks, freeing most of its own
/// and sending every third to the next thread to free. Sized for Miri,
/// whose data-race detector then checks the cache claims and the locks.
///
/// At most `IN_FLIGHT` blocks wait in each channel (a sender whose channel
/// is full frees what it has received meanwhile), so the live set does not
/// depend on how the threads happen to be scheduled.
#[test]
fn threads_free_each_others_blocks_and_every_page_returns() {
    const THREADS: usize = 3;
    const IN_FLIGHT: usize = 64;
    let rounds = if cfg!(miri) { 6 } else { 3000 };
    let arena = Arena::new(8 << 20);
    let heap = heap_over(&arena, 2);
    let start_free = heap.stats().free_pages();
    let heap = &*heap;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::sync_channel::<Sent>(IN_FLIGHT))
        .unzip();
    std::thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let tx = txs[(t + 1) % THREADS].clone();
            s.spawn(move || {
                harness::with_cpu(t, || {
                    let mut own = Vec::new();
                    let mut x = t as u64 * 0x9e37_79b9 + 1;
                    for i in 0..rounds {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let size = match x % 8 {
                            0 => MAX_SMALL + 1 + (x >> 8) as usize % (3 * PAGE_SIZE),
                            _ => 2 + (x >> 8) as usize % 600,
                        };
                        let layout = Layout::from_size_align(size, 1 << ((x >> 40) % 5)).unwrap();
                        // SAFETY: non-zero size.
                        let p = unsafe { heap.alloc(layout) };
                        assert!(!p.is_null(), "out of memory");
                        let tag = p as usize as u8;
                        // SAFETY: the block is live and `size` bytes long.
                        unsafe {
                            p.write(tag);
                            p.add(size - 1).write(!tag);
                        }
                        if i % 3 == 0 {
                            let mut sent = Sent(p, layout);
                            while let Err(full) = tx.try_send(sent) {
                                let mpsc::TrySendError::Full(back) = full else {
                                    unreachable!("receivers outlive their senders")
                                };
                                sent = back;
                                while let Ok(b) = rx.try_recv() {
                                    check_and_free(heap, b);
                                }
                                std::thread::yield_now();
                            }
                        } else {
                            own.push(Sent(p, layout));
                        }
                        if own.len() > 8 {
                            check_and_free(heap, own.swap_remove((x >> 20) as usize % own.len()));
                        }
                        while let Ok(b) = rx.try_recv() {
                            check_and_free(heap, b);
                        }
                    }
                    drop(tx);
                    own.into_iter().for_each(|b| check_and_free(heap, b));
                    rx.into_iter().for_each(|b| check_and_free(heap, b));
                });
            });
        }
        drop(txs);
    });
    for cpu in 0..2 {
        assert!(heap.drain_cpu(cpu).is_drained());
    }
    heap.reclaim();
    heap.check();
    assert_eq!(heap.stats().free_pages(), start_free, "pages lost");
}
