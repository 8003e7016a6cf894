//! Shared pieces of the whole-heap tests: host memory posing as physical
//! memory (identity-mapped, offset 0), a platform whose CPU id each test
//! thread sets, and a model of live blocks that catches overlap and lost
//! contents.
#![allow(dead_code)]

use std::alloc::Layout;
use std::cell::Cell;
use std::collections::BTreeMap;
use strata_alloc::{Heap, PhysAddr, PhysRange, Platform, PAGE_SIZE};

/// Host memory for a heap to manage: 2 MiB-aligned, zeroed lazily by the OS.
pub struct Arena {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the arena is plain memory; the heap under test synchronises access.
unsafe impl Send for Arena {}
// SAFETY: as above.
unsafe impl Sync for Arena {}

impl Arena {
    pub fn new(bytes: usize) -> Self {
        let layout = Layout::from_size_align(bytes, 2 << 20).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Arena { ptr, layout }
    }
    pub fn base(&self) -> usize {
        self.ptr as usize
    }
    pub fn len(&self) -> usize {
        self.layout.size()
    }
    /// `[base + from, base + from + len)` as a physical range (offset 0).
    pub fn range(&self, from: usize, len: usize) -> PhysRange {
        assert!(from + len <= self.len());
        let start = self.base() + from;
        PhysRange::new(
            PhysAddr::new(start as u64),
            PhysAddr::new((start + len) as u64),
        )
    }
    pub fn whole(&self) -> PhysRange {
        self.range(0, self.len())
    }
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.base() && addr + len <= self.base() + self.len()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// A platform whose CPU id is whatever the current test thread set.
pub struct TestCpu;

impl Platform for TestCpu {
    type IrqGuard = ();
    fn cpu_id() -> usize {
        CPU.with(|c| c.get())
    }
    fn disable_interrupts() {}
}

pub fn set_cpu(id: usize) {
    CPU.with(|c| c.set(id));
}

/// A boxed heap over `regions` (offset 0).
pub fn heap_over<P: Platform>(max_cpus: usize, regions: &[PhysRange]) -> Box<Heap<P>> {
    let heap = Box::new(Heap::<P>::new());
    // SAFETY: the ranges are parts of live arenas that outlive the heap in
    // every test, used by nothing else.
    unsafe { heap.init(0, max_cpus, regions) }.expect("init");
    heap
}

/// xorshift64*: a fixed-seed generator, enough for test sequences.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Log-uniform in `[lo, hi]`.
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        let f = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((l + (h - l) * f).exp() as usize).clamp(lo, hi)
    }
}

/// Fills a block with a pattern derived from `seed` (every byte for small
/// blocks; for large ones the first and last 4 KiB and one word per page).
pub fn fill(ptr: *mut u8, len: usize, seed: u64) {
    for_pattern(ptr, len, seed, |p, v| {
        // SAFETY: p lies inside the live block.
        unsafe { p.write(v) }
    });
}

/// Checks the pattern written by [`fill`].
pub fn verify(ptr: *mut u8, len: usize, seed: u64) {
    for_pattern(ptr, len, seed, |p, v| {
        // SAFETY: p lies inside the live block.
        let got = unsafe { p.read() };
        assert_eq!(
            got,
            v,
            "block {ptr:p} (len {len}) corrupted at offset {}",
            p as usize - ptr as usize
        );
    });
}

fn for_pattern(ptr: *mut u8, len: usize, seed: u64, mut f: impl FnMut(*mut u8, u8)) {
    let byte = |i: usize| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) >> 3) as u8;
    let mut visit = |i: usize| f(ptr.wrapping_add(i), byte(i));
    if len <= 3 * PAGE_SIZE {
        (0..len).for_each(&mut visit);
    } else {
        (0..PAGE_SIZE).for_each(&mut visit);
        (len - PAGE_SIZE..len).for_each(&mut visit);
        (PAGE_SIZE..len - PAGE_SIZE)
            .step_by(PAGE_SIZE)
            .for_each(&mut visit);
    }
}

/// Live blocks by start address; panics on overlap.
#[derive(Default)]
pub struct Live {
    blocks: BTreeMap<usize, (usize, u64)>,
}

impl Live {
    pub fn insert(&mut self, ptr: *mut u8, layout: Layout, seed: u64) {
        let (start, len) = (ptr as usize, layout.size().max(1));
        assert_eq!(
            start % layout.align(),
            0,
            "{ptr:p} not aligned to {}",
            layout.align()
        );
        if let Some((&s, &(l, _))) = self.blocks.range(..=start).next_back() {
            assert!(
                s + l <= start,
                "{ptr:p}+{len} overlaps live block {s:#x}+{l}"
            );
        }
        if let Some((&s, &(l, _))) = self.blocks.range(start..).next() {
            assert!(
                start + len <= s,
                "{ptr:p}+{len} overlaps live block {s:#x}+{l}"
            );
        }
        self.blocks.insert(start, (len, seed));
    }
    pub fn remove(&mut self, ptr: *mut u8) {
        self.blocks.remove(&(ptr as usize)).expect("not live");
    }
    pub fn len(&self) -> usize {
        self.blocks.len()
    }
}
