//! A model-checked driver for one [`Heap`]: replays a sequence of [`Op`]s
//! against host memory posing as physical memory (offset 0) and checks
//! every answer against a model of the live blocks.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/heap_ops.rs`, which decodes
//! fuzzer bytes into ops), the property tests (`tests/prop.rs`, which
//! generate and shrink op sequences) and the regression tests
//! (`tests/regressions.rs`, which replay minimised sequences).
//!
//! What is checked:
//! * every block is aligned, lies inside a region given to the heap, and
//!   overlaps no other live block (GlobalAlloc blocks and page runs alike);
//! * contents survive: each block is filled with a pattern on allocation
//!   and the pattern is verified on free and realloc (and realloc keeps the
//!   old prefix);
//! * `alloc_zeroed` blocks and zeroed page runs read as zero;
//! * page runs honour their physical alignment and `below` limit, and
//!   impossible requests (zero pages, a non-power-of-two alignment) fail;
//! * a run request without a limit fails only when the page heap has no
//!   free block big enough afterwards;
//! * `add_region` succeeds or fails exactly as the model of the regions
//!   says, and a successful one adds its pages to the free count;
//! * invalid calls ([`Op::Refused`]: interior and foreign pointers, wrong
//!   layouts, page runs freed twice through either path, regions that
//!   overlap the heap) are refused, with a panic or an error, and change
//!   nothing; a drain from inside a claimed cache ([`Op::NestedDrain`])
//!   returns at once;
//! * at the end, once everything is freed, every CPU drained and the heap
//!   reclaimed: the free page count is back to its value after `init` (plus
//!   added regions), no span, run or cached object is left, and
//!   `Heap::check` passes.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use strata_alloc::size_class::SizeClass;
use strata_alloc::{
    Drain, Heap, HeapError, PageRequest, PhysAddr, PhysRange, Platform, MAX_SMALL, PAGE_SIZE,
};

/// The largest byte size an op asks for.
pub const MAX_SIZE: usize = 1 << 20;
/// The largest alignment an op asks for (bytes).
pub const MAX_ALIGN_LOG2: u32 = 16;
/// The largest page count of a page request.
pub const MAX_PAGES: usize = 512;
/// The largest page alignment of a page request (log2 of pages).
pub const MAX_PAGE_ALIGN_LOG2: u32 = 9;

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
    static NESTED: Cell<Option<Nested>> = const { Cell::new(None) };
}

/// An allocation (or, with no layout, a drain of the current CPU) made
/// from inside the allocator, right after a CPU cache is claimed, as an
/// interrupt handler would.
#[derive(Copy, Clone)]
struct Nested {
    heap: *const Heap<OpCpu>,
    layout: Option<Layout>,
}

/// A platform whose CPU id is whatever the current op set; it can re-enter
/// the heap from [`Platform::cache_claimed`] (see [`Op::Nested`]).
pub struct OpCpu;

impl Platform for OpCpu {
    type IrqGuard = ();
    fn cpu_id() -> usize {
        CPU.with(Cell::get)
    }
    fn disable_interrupts() {}
    fn cache_claimed() {
        if let Some(n) = NESTED.with(Cell::take) {
            // SAFETY: `run` sets NESTED only while the heap it points to is
            // alive and clears it before the heap is dropped.
            let heap = unsafe { &*n.heap };
            let Some(layout) = n.layout else {
                // The interrupted context holds this CPU's cache: the drain
                // must not wait for it.
                assert_eq!(heap.drain_cpu(OpCpu::cpu_id()), Drain::Requested);
                return;
            };
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { heap.alloc(layout) };
            if !p.is_null() {
                assert_eq!(p as usize % layout.align(), 0, "nested block misaligned");
                fill(p, layout.size(), 0x4e57);
                verify(p, layout.size(), 0x4e57);
                // SAFETY: allocated just above with this layout.
                unsafe { heap.dealloc(p, layout) };
            }
        }
    }
}

/// Runs `f` with the CPU id set to `id`, then restores the previous id.
pub fn with_cpu<R>(id: usize, f: impl FnOnce() -> R) -> R {
    let old = CPU.with(|c| c.replace(id));
    let r = f();
    CPU.with(|c| c.set(old));
    r
}

/// Clears a pending nested allocation when `run` ends, also by a panic, so
/// no later heap's hook sees a dangling pointer.
struct ClearNested;

impl Drop for ClearNested {
    fn drop(&mut self) {
        NESTED.with(|n| n.set(None));
    }
}

/// Which CPU id an op runs on. Ids at or above `max_cpus` take the shared
/// path.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Cpu {
    /// `id % (max_cpus + 2)`: mostly valid ids, some just past the end.
    Id(u8),
    /// `usize::MAX`.
    Max,
}

impl Cpu {
    fn resolve(self, max_cpus: usize) -> usize {
        match self {
            Cpu::Id(i) => i as usize % (max_cpus + 2),
            Cpu::Max => usize::MAX,
        }
    }
}

/// One step of a sequence. Indices (`pick`) choose among the live blocks of
/// the right kind, modulo their number; an op with nothing to pick does
/// nothing.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `GlobalAlloc::alloc` (or `alloc_zeroed`) of `size` bytes aligned to
    /// `2^align_log2`.
    Alloc {
        /// Bytes, 1..=MAX_SIZE.
        size: usize,
        /// log2 of the alignment, 0..=MAX_ALIGN_LOG2.
        align_log2: u8,
        /// Through `alloc_zeroed`.
        zeroed: bool,
        /// The CPU.
        cpu: Cpu,
    },
    /// `GlobalAlloc::dealloc` of a live block.
    Dealloc {
        /// Which block.
        pick: u32,
        /// The CPU.
        cpu: Cpu,
    },
    /// `GlobalAlloc::realloc` of a live block to `new_size` bytes.
    Realloc {
        /// Which block.
        pick: u32,
        /// Bytes, 1..=MAX_SIZE.
        new_size: usize,
        /// The CPU.
        cpu: Cpu,
    },
    /// `Heap::alloc_pages`.
    AllocPages {
        /// Pages (0 must fail).
        count: usize,
        /// Alignment in pages; a non-power of two must fail.
        align: usize,
        /// Zeroed.
        zeroed: bool,
        /// A limit, in bytes from the main arena's base (so 0 is below
        /// every region).
        below: Option<usize>,
        /// The CPU.
        cpu: Cpu,
    },
    /// `Heap::free_pages` of a live page run.
    FreePages {
        /// Which run.
        pick: u32,
        /// The CPU.
        cpu: Cpu,
    },
    /// `Heap::drain_cpu` (the id resolved like an op's CPU).
    DrainCpu(Cpu),
    /// `Heap::reclaim`.
    Reclaim,
    /// `Heap::add_region` of `[start, start + len)` bytes of the second
    /// arena (clamped to it).
    AddRegion {
        /// Offset in the second arena.
        start: usize,
        /// Length in bytes.
        len: usize,
    },
    /// `Heap::check`.
    Check,
    /// The next op that claims a CPU cache allocates and frees a block of
    /// this layout from inside the allocator while the cache is claimed.
    Nested {
        /// Bytes, 1..=MAX_SIZE.
        size: usize,
        /// log2 of the alignment.
        align_log2: u8,
    },
    /// The next op that claims a CPU cache calls `drain_cpu` on that CPU
    /// from inside the allocator, as an interrupt handler would: it must
    /// return `Drain::Requested` at once.
    NestedDrain,
    /// An invalid call, which must be refused (a panic naming the address,
    /// or an error) and leave the heap unchanged. `how % 6` picks it:
    /// 0. `dealloc` of a pointer one byte into a live block;
    /// 1. `dealloc` of a live block with a layout of another size class or
    ///    page count;
    /// 2. `dealloc` of a pointer outside every region;
    /// 3. `free_pages` of a live run, then `free_pages` of it again;
    /// 4. `free_pages` of a live run, then `dealloc` of it as a large block;
    /// 5. `add_region` of a range overlapping a region of the heap.
    Refused {
        /// Which block.
        pick: u32,
        /// Which invalid call.
        how: u8,
        /// The CPU.
        cpu: Cpu,
    },
}

/// Runs `f`, which must panic (the heap refusing a call), with the panic
/// hook silenced meanwhile (the fuzzer's own hook would abort). Returns
/// whether it panicked.
fn refused(f: impl FnOnce()) -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r.is_err()
}

/// The heap's setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes of the main arena (a multiple of the page size).
    pub arena: usize,
    /// Bytes of the second arena, for `AddRegion` (0: none).
    pub extra: usize,
    /// `max_cpus` for `init`.
    pub max_cpus: usize,
    /// Regions for `init`, as `(start, end)` byte offsets in the main arena:
    /// sorted, disjoint.
    pub regions: Vec<(usize, usize)>,
}

impl Config {
    /// The whole main arena as one region.
    pub fn simple(arena: usize, max_cpus: usize) -> Self {
        Config {
            arena,
            extra: 0,
            max_cpus,
            regions: vec![(0, arena)],
        }
    }
}

/// Host memory for a heap, aligned to its own size rounded up to a power of
/// two, so the buddy structure does not depend on where the host puts it.
pub struct Arena {
    ptr: *mut u8,
    layout: Layout,
}

impl Arena {
    /// `bytes` of uninitialised memory, like RAM from a firmware memory
    /// map. (Not zeroed: that would touch every page of every arena, and
    /// under Miri a read of a byte the heap never wrote is reported.)
    pub fn new(bytes: usize) -> Self {
        let align = bytes.next_power_of_two().max(PAGE_SIZE);
        let layout = Layout::from_size_align(bytes, align).expect("arena layout");
        // SAFETY: the size is non-zero (callers pass at least a page).
        let ptr = unsafe { std::alloc::alloc(layout) };
        assert!(!ptr.is_null(), "host out of memory for the arena");
        Arena { ptr, layout }
    }
    /// The base address (exposes the arena's provenance, so addresses the
    /// heap derives from it are usable).
    pub fn base(&self) -> usize {
        self.ptr as usize
    }
    /// Its length.
    pub fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// The byte of the fill pattern at offset `i` of a block filled with `seed`.
fn pattern(seed: u64, i: usize) -> u8 {
    let x = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x ^ (x >> 29) ^ (x >> 47)) as u8
}

/// The offsets of a block that are filled and checked: every byte of
/// blocks up to 16 KiB; for larger ones the first and last page and every
/// 509th byte in between.
fn sample(len: usize, mut f: impl FnMut(usize)) {
    if len <= 4 * PAGE_SIZE {
        (0..len).for_each(f);
    } else {
        (0..PAGE_SIZE).for_each(&mut f);
        (PAGE_SIZE..len - PAGE_SIZE).step_by(509).for_each(&mut f);
        (len - PAGE_SIZE..len).for_each(f);
    }
}

fn fill(ptr: *mut u8, len: usize, seed: u64) {
    sample(len, |i| {
        // SAFETY: i < len, inside the live block.
        unsafe { ptr.add(i).write(pattern(seed, i)) }
    });
}

fn verify(ptr: *mut u8, len: usize, seed: u64) {
    verify_prefix(ptr, len, len, seed);
}

/// Checks the pattern of a block filled with `seed` over `filled` bytes, on
/// its first `len` bytes.
fn verify_prefix(ptr: *mut u8, filled: usize, len: usize, seed: u64) {
    sample(filled, |i| {
        if i < len {
            // SAFETY: i < len, inside the live block.
            let got = unsafe { ptr.add(i).read() };
            assert_eq!(
                got,
                pattern(seed, i),
                "block {ptr:p} ({filled} bytes) corrupted at offset {i}"
            );
        }
    });
}

fn verify_zero(ptr: *mut u8, len: usize) {
    sample(len, |i| {
        // SAFETY: i < len, inside the live block.
        let got = unsafe { ptr.add(i).read() };
        assert_eq!(
            got, 0,
            "zeroed block {ptr:p} ({len} bytes) has {got:#x} at offset {i}"
        );
    });
}

#[derive(Copy, Clone, Debug)]
enum Kind {
    Global(Layout),
    Pages { phys: u64, count: usize },
}

#[derive(Copy, Clone, Debug)]
struct Block {
    ptr: *mut u8,
    len: usize,
    seed: u64,
    kind: Kind,
}

/// The live blocks, with an address index that catches overlap.
#[derive(Default)]
struct Model {
    global: Vec<Block>,
    pages: Vec<Block>,
    by_addr: BTreeMap<usize, usize>,
    /// Byte ranges the heap manages (as given to it).
    regions: Vec<(usize, usize)>,
    next_seed: u64,
}

impl Model {
    fn seed(&mut self) -> u64 {
        self.next_seed = self.next_seed.wrapping_add(0x2545_f491_4f6c_dd1d);
        self.next_seed
    }

    fn insert(&mut self, b: Block) {
        let (start, len) = (b.ptr as usize, b.len);
        let end = start.checked_add(len).expect("block wraps around");
        assert!(
            self.regions.iter().any(|&(s, e)| s <= start && end <= e),
            "block {start:#x}+{len} lies outside every region: {:#x?}",
            self.regions
        );
        if let Some((&s, &l)) = self.by_addr.range(..=start).next_back() {
            assert!(
                s + l <= start,
                "{start:#x}+{len} overlaps live block {s:#x}+{l}"
            );
        }
        if let Some((&s, &l)) = self.by_addr.range(start..).next() {
            assert!(end <= s, "{start:#x}+{len} overlaps live block {s:#x}+{l}");
        }
        self.by_addr.insert(start, len);
        match b.kind {
            Kind::Global(_) => self.global.push(b),
            Kind::Pages { .. } => self.pages.push(b),
        }
    }

    fn remove_addr(&mut self, ptr: *mut u8) {
        self.by_addr
            .remove(&(ptr as usize))
            .expect("block not in the index");
    }
}

/// `ceil(log2(n))`.
fn ceil_log2(n: usize) -> u32 {
    n.next_power_of_two().trailing_zeros()
}

/// Runs `ops` on a fresh heap set up by `config`, checking everything the
/// [module docs](self) list. Panics on the first violation.
pub fn run(config: &Config, ops: &[Op]) {
    let arena = Arena::new(config.arena);
    let extra = (config.extra > 0).then(|| Arena::new(config.extra));
    let regions: Vec<PhysRange> = config
        .regions
        .iter()
        .map(|&(s, e)| {
            assert!(s < e && e <= config.arena, "bad region in config");
            PhysRange::new(
                PhysAddr::new((arena.base() + s) as u64),
                PhysAddr::new((arena.base() + e) as u64),
            )
        })
        .collect();
    let heap = Box::new(Heap::<OpCpu>::new());
    // Declared after the heap: dropped (clearing NESTED) before it.
    let _clear = ClearNested;
    CPU.with(|c| c.set(0));
    // SAFETY: the regions lie inside `arena`, which outlives the heap and
    // is used by nothing else; offset 0 maps host addresses to themselves.
    let init = unsafe { heap.init(0, config.max_cpus, &regions) };
    let has_caches = match init {
        // Too little memory for the caches (`cached_cpus == 0`): the heap
        // works on the central path alone.
        Ok(report) => report.cached_cpus > 0,
        Err(e) => panic!("init of {config:?} failed: {e}"),
    };
    let start_free = heap.stats().free_pages();
    let mut added_free = 0;
    let mut model = Model {
        regions: config
            .regions
            .iter()
            .map(|&(s, e)| (arena.base() + s, arena.base() + e))
            .collect(),
        next_seed: 0x5eed,
        ..Model::default()
    };
    let mut added: Vec<(u64, u64)> = Vec::new();
    for op in ops {
        step(
            &heap,
            config,
            &arena,
            extra.as_ref(),
            has_caches,
            &mut model,
            &mut added,
            &mut added_free,
            op,
        );
        if !matches!(op, Op::Nested { .. } | Op::NestedDrain) {
            NESTED.with(|n| n.set(None));
        }
    }
    NESTED.with(|n| n.set(None));
    heap.check();

    // Free everything and check nothing leaked.
    CPU.with(|c| c.set(0));
    for b in std::mem::take(&mut model.global) {
        let Kind::Global(layout) = b.kind else {
            unreachable!()
        };
        verify(b.ptr, b.len, b.seed);
        // SAFETY: live with this layout.
        unsafe { heap.dealloc(b.ptr, layout) };
    }
    for b in std::mem::take(&mut model.pages) {
        let Kind::Pages { phys, count } = b.kind else {
            unreachable!()
        };
        verify(b.ptr, b.len, b.seed);
        // SAFETY: a live run of `count` pages, no longer used.
        unsafe { heap.free_pages(PhysAddr::new(phys), count) };
    }
    for cpu in 0..config.max_cpus + 2 {
        assert_eq!(
            heap.drain_cpu(cpu).is_drained(),
            has_caches && cpu < config.max_cpus,
            "drain_cpu({cpu})"
        );
    }
    heap.reclaim();
    heap.check();
    let s = heap.stats();
    assert_eq!(
        s.free_pages(),
        start_free + added_free,
        "pages lost: {} free after init, {added_free} added, now:\n{s}",
        start_free
    );
    assert_eq!((s.large_runs, s.large_pages), (0, 0), "runs left:\n{s}");
    assert_eq!(s.cached_objects, 0, "objects left in caches:\n{s}");
    assert_eq!(s.small_objects_in_use(), 0, "objects left:\n{s}");
    assert_eq!(s.span_pages(), 0, "spans left:\n{s}");
    drop(heap);
    drop(extra);
    drop(arena);
}

/// After a failed request of `n` pages aligned to `2^align_order` pages
/// without a limit: the page heap has no free block that could have served
/// it.
fn assert_no_fitting_block(
    heap: &Heap<OpCpu>,
    n: usize,
    align_order: u32,
    what: &dyn std::fmt::Debug,
) {
    let need = ceil_log2(n).max(align_order) as usize;
    let s = heap.stats();
    if let Some(order) = (need..s.pages.free_blocks.len()).find(|&o| s.pages.free_blocks[o] > 0) {
        panic!("{what:?} failed although a free block of order {order} (>= {need}) exists:\n{s}");
    }
}

/// After a failed small or large `GlobalAlloc` request of this layout.
fn assert_alloc_could_not_succeed(heap: &Heap<OpCpu>, layout: Layout, what: &dyn std::fmt::Debug) {
    match SizeClass::for_layout(layout.size(), layout.align()) {
        Some(class) => assert_no_fitting_block(
            heap,
            1 << class.info().span_order,
            class.info().span_order as u32,
            what,
        ),
        None => {
            let n = layout.size().div_ceil(PAGE_SIZE).max(1);
            let align_order = (layout.align() / PAGE_SIZE).max(1).trailing_zeros();
            assert_no_fitting_block(heap, n, align_order, what)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn step(
    heap: &Heap<OpCpu>,
    config: &Config,
    arena: &Arena,
    extra: Option<&Arena>,
    has_caches: bool,
    model: &mut Model,
    added: &mut Vec<(u64, u64)>,
    added_free: &mut u64,
    op: &Op,
) {
    let set_cpu = |cpu: Cpu| CPU.with(|c| c.set(cpu.resolve(config.max_cpus)));
    match *op {
        Op::Alloc {
            size,
            align_log2,
            zeroed,
            cpu,
        } => {
            set_cpu(cpu);
            let size = size.clamp(1, MAX_SIZE);
            let align = 1usize << (align_log2 as u32).min(MAX_ALIGN_LOG2);
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe {
                if zeroed {
                    heap.alloc_zeroed(layout)
                } else {
                    heap.alloc(layout)
                }
            };
            if p.is_null() {
                assert_alloc_could_not_succeed(heap, layout, op);
                return;
            }
            assert_eq!(p as usize % align, 0, "{op:?}: {p:p} misaligned");
            if zeroed {
                verify_zero(p, size);
            }
            let seed = model.seed();
            model.insert(Block {
                ptr: p,
                len: size,
                seed,
                kind: Kind::Global(layout),
            });
            fill(p, size, seed);
        }
        Op::Dealloc { pick, cpu } => {
            if model.global.is_empty() {
                return;
            }
            set_cpu(cpu);
            let b = model.global.swap_remove(pick as usize % model.global.len());
            let Kind::Global(layout) = b.kind else {
                unreachable!()
            };
            verify(b.ptr, b.len, b.seed);
            model.remove_addr(b.ptr);
            // SAFETY: live with this layout.
            unsafe { heap.dealloc(b.ptr, layout) };
        }
        Op::Realloc {
            pick,
            new_size,
            cpu,
        } => {
            if model.global.is_empty() {
                return;
            }
            set_cpu(cpu);
            let i = pick as usize % model.global.len();
            let b = model.global[i];
            let Kind::Global(layout) = b.kind else {
                unreachable!()
            };
            let new_size = new_size.clamp(1, MAX_SIZE);
            verify(b.ptr, b.len, b.seed);
            // SAFETY: live with this layout; new_size is non-zero and small
            // enough not to overflow when rounded to the alignment.
            let q = unsafe { heap.realloc(b.ptr, layout, new_size) };
            if q.is_null() {
                // The old block stays live and intact.
                verify(b.ptr, b.len, b.seed);
                let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                assert_alloc_could_not_succeed(heap, new_layout, op);
                return;
            }
            assert_eq!(q as usize % layout.align(), 0, "{op:?}: {q:p} misaligned");
            verify_prefix(q, b.len, b.len.min(new_size), b.seed);
            model.global.swap_remove(i);
            model.remove_addr(b.ptr);
            let seed = model.seed();
            let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
            model.insert(Block {
                ptr: q,
                len: new_size,
                seed,
                kind: Kind::Global(new_layout),
            });
            fill(q, new_size, seed);
        }
        Op::AllocPages {
            count,
            align,
            zeroed,
            below,
            cpu,
        } => {
            set_cpu(cpu);
            let mut req = PageRequest::new(count).align(align);
            if zeroed {
                req = req.zeroed();
            }
            let limit = below.map(|b| (arena.base() + b) as u64);
            if let Some(limit) = limit {
                req = req.below(PhysAddr::new(limit));
            }
            let got = heap.alloc_pages(req);
            if count == 0 || !align.is_power_of_two() {
                assert_eq!(got, None, "{op:?} must fail");
                return;
            }
            let Some(a) = got else {
                if limit.is_none() {
                    assert_no_fitting_block(heap, count, align.trailing_zeros(), op);
                }
                return;
            };
            let phys = a.phys.as_u64();
            assert_eq!(a.count, count, "{op:?}");
            assert_eq!(a.virt.as_usize() as u64, phys, "{op:?}: offset is 0");
            assert_eq!(
                phys % (align * PAGE_SIZE) as u64,
                0,
                "{op:?}: {phys:#x} misaligned"
            );
            if let Some(limit) = limit {
                assert!(
                    phys + (count * PAGE_SIZE) as u64 <= limit,
                    "{op:?}: run {phys:#x}+{count} pages ends above the limit {limit:#x}"
                );
            }
            let ptr: *mut u8 = a.virt.as_mut_ptr();
            let len = count * PAGE_SIZE;
            if zeroed {
                verify_zero(ptr, len);
            }
            let seed = model.seed();
            model.insert(Block {
                ptr,
                len,
                seed,
                kind: Kind::Pages { phys, count },
            });
            fill(ptr, len, seed);
        }
        Op::FreePages { pick, cpu } => {
            set_cpu(cpu);
            free_picked_run(heap, model, pick);
        }
        Op::DrainCpu(cpu) => {
            let id = cpu.resolve(config.max_cpus);
            // Drained from another CPU's context, as a hotplug path would.
            CPU.with(|c| c.set(0));
            assert_eq!(
                heap.drain_cpu(id).is_drained(),
                has_caches && id < config.max_cpus,
                "{op:?}"
            );
        }
        Op::Reclaim => {
            heap.reclaim();
        }
        Op::AddRegion { start, len } => {
            let Some(extra) = extra else { return };
            let start = start % extra.len();
            let end = start + len.min(extra.len() - start);
            let (s, e) = ((extra.base() + start) as u64, (extra.base() + end) as u64);
            let range = PhysRange::new(PhysAddr::new(s), PhysAddr::new(e));
            let page = PAGE_SIZE as u64;
            let (first, last) = (s.div_ceil(page), e / page);
            let expected = if e <= s || first >= last {
                Err("empty")
            } else if added.iter().any(|&(a, b)| a < e && s < b) {
                Err("overlap")
            } else if last - first < 2 {
                Err("too small")
            } else {
                Ok(())
            };
            let before = heap.stats().free_pages();
            // SAFETY: the range lies in the second arena, which outlives the
            // heap; ranges that overlap an added one are refused.
            let got = unsafe { heap.add_region(range) };
            match (&got, expected) {
                (Ok(()), Ok(())) => {
                    added.push((s, e));
                    model.regions.push((s as usize, e as usize));
                    let after = heap.stats().free_pages();
                    assert!(after > before, "{op:?} added no free pages");
                    *added_free += after - before;
                }
                (Err(HeapError::EmptyRegion(_)), Err("empty"))
                | (Err(HeapError::Overlap { .. }), Err("overlap"))
                | (Err(HeapError::TooSmall(_)), Err("too small")) => {
                    assert_eq!(
                        heap.stats().free_pages(),
                        before,
                        "{op:?} failed but changed the heap"
                    );
                }
                (got, expected) => panic!("{op:?} ({range:?}): got {got:?}, expected {expected:?}"),
            }
        }
        Op::Check => heap.check(),
        Op::Nested { size, align_log2 } => {
            let size = size.clamp(1, MAX_SIZE);
            let align = 1usize << (align_log2 as u32).min(MAX_ALIGN_LOG2);
            let layout = Layout::from_size_align(size, align).unwrap();
            // Cleared after the next op.
            NESTED.with(|n| {
                n.set(Some(Nested {
                    heap,
                    layout: Some(layout),
                }))
            });
        }
        Op::NestedDrain => {
            // Cleared after the next op.
            NESTED.with(|n| n.set(Some(Nested { heap, layout: None })));
        }
        Op::Refused { pick, how, cpu } => {
            set_cpu(cpu);
            refuse(heap, config, arena, model, pick, how, op);
        }
    }
}

/// Frees the live page run that `pick` chooses (checking its contents)
/// and returns it; `None` if there is none.
fn free_picked_run(heap: &Heap<OpCpu>, model: &mut Model, pick: u32) -> Option<Block> {
    if model.pages.is_empty() {
        return None;
    }
    let b = model.pages.swap_remove(pick as usize % model.pages.len());
    let Kind::Pages { phys, count } = b.kind else {
        unreachable!()
    };
    verify(b.ptr, b.len, b.seed);
    model.remove_addr(b.ptr);
    // SAFETY: a live run of `count` pages, no longer used.
    unsafe { heap.free_pages(PhysAddr::new(phys), count) };
    Some(b)
}

/// [`Op::Refused`].
fn refuse(
    heap: &Heap<OpCpu>,
    config: &Config,
    arena: &Arena,
    model: &mut Model,
    pick: u32,
    how: u8,
    op: &Op,
) {
    let before = heap.stats().free_pages();
    match how % 6 {
        0..=2 => {
            if model.global.is_empty() {
                return;
            }
            let b = model.global[pick as usize % model.global.len()];
            let Kind::Global(layout) = b.kind else {
                unreachable!()
            };
            let small = layout.size() <= MAX_SMALL && layout.align() <= PAGE_SIZE;
            let (ptr, layout) = match how % 6 {
                0 => (b.ptr.wrapping_add(1), layout),
                1 => {
                    // A small block as a large one, a large one one page
                    // longer.
                    let size = if small {
                        MAX_SMALL + 1
                    } else {
                        layout.size().div_ceil(PAGE_SIZE) * PAGE_SIZE + 1
                    };
                    (
                        b.ptr,
                        Layout::from_size_align(size, layout.align()).unwrap(),
                    )
                }
                _ => {
                    let local = 0u64;
                    (&local as *const u64 as *mut u8, Layout::new::<u64>())
                }
            };
            // SAFETY: refused before anything is touched (the test's point).
            let panicked = refused(|| unsafe { heap.dealloc(ptr, layout) });
            assert!(
                panicked,
                "{op:?}: dealloc({ptr:p}, {layout:?}) was accepted"
            );
            verify(b.ptr, b.len, b.seed);
        }
        3 | 4 => {
            let Some(b) = free_picked_run(heap, model, pick) else {
                return;
            };
            let Kind::Pages { phys, count } = b.kind else {
                unreachable!()
            };
            let after_free = heap.stats().free_pages();
            let panicked = if how % 6 == 3 {
                // SAFETY: refused (the test's point).
                refused(|| unsafe { heap.free_pages(PhysAddr::new(phys), count) })
            } else {
                let layout = Layout::from_size_align(count * PAGE_SIZE, PAGE_SIZE).unwrap();
                // SAFETY: refused (the test's point).
                refused(|| unsafe { heap.dealloc(b.ptr, layout) })
            };
            assert!(
                panicked,
                "{op:?}: a second free of the run at {phys:#x} was accepted"
            );
            assert_eq!(
                heap.stats().free_pages(),
                after_free,
                "{op:?} changed the heap"
            );
            return;
        }
        _ => {
            let Some(&(s, e)) = config.regions.get(pick as usize % config.regions.len()) else {
                return;
            };
            let mid = arena.base() + (s + e) / 2;
            let range = PhysRange::new(
                PhysAddr::new(mid as u64),
                PhysAddr::new((mid + 8 * PAGE_SIZE) as u64),
            );
            // SAFETY: refused before anything is touched.
            let got = unsafe { heap.add_region(range) };
            assert!(
                matches!(got, Err(HeapError::Overlap { .. })),
                "{op:?}: add_region({range:?}) overlapping the heap gave {got:?}"
            );
        }
    }
    assert_eq!(heap.stats().free_pages(), before, "{op:?} changed the heap");
}
