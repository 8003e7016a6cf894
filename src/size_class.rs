//! Size classes: which object sizes strata serves from spans, and how many
//! pages each class's span takes.
//!
//! # How the table is made
//!
//! The table is computed at compile time by [`generate`], the rule of the Go
//! runtime's `mksizeclasses.go` adapted to 4 KiB pages and power-of-two
//! spans:
//!
//! * Sizes step by 8 up to 32 bytes, by 16 up to 128, by 1/8 of the
//!   enclosing power of two up to 512 and by 1/16 above, so a request is
//!   rounded up by at most 12.5 % above 128 bytes (6.25 % above 512, where
//!   most of a heap's bytes are: the finer steps there raised the measured
//!   heap efficiency from 87 % to 90 %), and every power of two is a class (a request aligned
//!   to `a` with `a <= 4096` is served by the class of `round_up(size, a)`
//!   with no padding: objects of a power-of-two class are naturally aligned
//!   since spans are page-aligned).
//! * A size replaces the previous class if, with spans sized for 8 objects
//!   (the smallest `2^k` pages whose tail, the bytes left after the last
//!   whole object, is at most 1/8 of the span and that hold 8 objects), both
//!   would get the same span and object count: it costs nothing more and
//!   serves more sizes. It does not when that would widen the gap below it
//!   beyond 12.5 %.
//! * Each class then takes the smallest span of `2^k` pages whose tail is
//!   at most 1/8 and that holds at least 32 objects (up to 64 KiB), so a
//!   CPU cache's refill or flush (a batch of at most 32 objects from 1 KiB
//!   up) takes objects from one span, and a span is made or given back to
//!   the page heap once per 32 objects or more. With spans of 8 objects,
//!   10,000 objects of 1 KiB allocated and then freed made and retired
//!   1,250 two-page spans each round, and the page heap took over a third
//!   of the instructions; with 32 (and the fallback below), a round of
//!   that takes 27 % fewer instructions freed in order and 25 % fewer
//!   freed in random order (callgrind; freed in random order, 4 KiB
//!   objects 14 % fewer, 256 B 10 %, 64 B 2 %). The cost is the smallest
//!   footprint of a class in use: one span per class is 2.9 MiB over all
//!   71 classes, against 1.8 MiB.
//! * Each class also has a fallback span ([`SizeClass::fallback`]): the
//!   smallest `2^k` pages that hold one object. When the page heap has no
//!   free block of the class's own span order (a fragmented or nearly full
//!   heap), the central list makes a fallback span instead, so a class
//!   can use the last small free blocks of a heap rather than fail while
//!   they are free (Linux's SLUB falls back from its preferred slab order
//!   to the minimum order the same way). Without it, larger spans cost a
//!   fragmented heap its last pieces: filling a kernel heap with 4 KiB,
//!   then 256 B, then 64 B blocks left the 4 KiB phase short of 64 KiB
//!   blocks early. A fallback span's tail is not bounded (at worst 47 %:
//!   one 4352-byte object in 8 KiB), which is the price of serving at all;
//!   such spans exist only while the heap is short of larger blocks, and
//!   are never kept once empty (see `central`). The benchmark's heap
//!   efficiency is 92.0 % with both changes, 91.9 % before.
//!
//! The invariants are pinned by `static_assertions` below: sorted, every
//! power of two from 8 to [`MAX_SMALL`] is a class, neighbouring classes at
//! most 12.5 % apart above 128 bytes, tail waste at most 12.5 %.
//!
//! # Why `MAX_SMALL` is 16 KiB
//!
//! Above `MAX_SMALL` a request is a page run from the buddy heap, rounded to
//! whole pages (it wastes less than one page). Below it, a request is
//! rounded up to its class and pays its share of the span's tail. The test
//! `octave_waste` measures both on requests drawn log-uniformly from each
//! octave (waste / requested bytes):
//!
//! ```text
//!   octave        whole pages   size classes
//!    4–8 KiB         38.6 %         6.4 %
//!    8–16 KiB        18.4 %         8.9 %
//!   16–32 KiB         8.9 %         8.9 %
//!   32–64 KiB         4.4 %         8.9 %
//! ```
//!
//! Classes waste less up to 16 KiB, as much from 16 to 32 KiB, and more
//! above, so strata stops at 16 KiB.
//! Classes above 16 KiB would also need spans of 32+ pages per class in every
//! CPU's cache. (Linux's kmalloc caches stop at 8 KiB, the Go runtime at
//! 32 KiB over 8 KiB pages: the same crossover, scaled by the page size.)
//!
//! # The table
//!
//! `max waste` is the worst case: every object holds one byte more than the
//! class below, plus the tail. Printed by the test `print_table`.
//!
//! ```text
//! class  bytes/obj  bytes/span  objects  tail waste  max waste
//!     0          8        4096      512      0.00%     87.50%
//!     1         16        4096      256      0.00%     43.75%
//!     2         24        4096      170      0.39%     29.44%
//!     3         32        4096      128      0.00%     21.88%
//!     4         48        4096       85      0.39%     31.52%
//!     5         64        4096       64      0.00%     23.44%
//!     6         80        4096       51      0.39%     19.07%
//!     7         96        4096       42      1.56%     16.94%
//!     8        112        4096       36      1.56%     14.75%
//!     9        128        4096       32      0.00%     11.72%
//!    10        144        8192       56      1.56%     11.82%
//!    11        160        8192       51      0.39%      9.73%
//!    12        176        8192       46      1.17%      9.59%
//!    13        192        8192       42      1.56%      9.25%
//!    14        208        8192       39      0.98%      8.12%
//!    15        224        8192       36      1.56%      8.15%
//!    16        240        8192       34      0.39%      6.62%
//!    17        256        8192       32      0.00%      5.86%
//!    18        288       16384       56      1.56%     12.16%
//!    19        320       16384       51      0.39%     10.04%
//!    20        352       16384       46      1.17%      9.88%
//!    21        384       16384       42      1.56%      9.51%
//!    22        416       16384       39      0.98%      8.36%
//!    23        448       16384       36      1.56%      8.37%
//!    24        480       16384       34      0.39%      6.82%
//!    25        512       16384       32      0.00%      6.05%
//!    26        544       32768       60      0.39%      6.07%
//!    27        576       32768       56      1.56%      6.86%
//!    28        608       32768       53      1.66%      6.67%
//!    29        672       32768       48      1.56%     10.79%
//!    30        736       32768       44      1.17%      9.63%
//!    31        800       32768       40      2.34%     10.03%
//!    32        896       32768       36      1.56%     12.00%
//!    33        992       32768       33      0.10%      9.66%
//!    34       1024       32768       32      0.00%      3.03%
//!    35       1088       65536       60      0.39%      6.16%
//!    36       1152       65536       56      1.56%      6.95%
//!    37       1216       65536       53      1.66%      6.76%
//!    38       1344       65536       48      1.56%     10.86%
//!    39       1472       65536       44      1.17%      9.70%
//!    40       1600       65536       40      2.34%     10.10%
//!    41       1792       65536       36      1.56%     12.05%
//!    42       1984       65536       33      0.10%      9.72%
//!    43       2048       65536       32      0.00%      3.08%
//!    44       2176       65536       30      0.39%      6.20%
//!    45       2304       65536       28      1.56%      6.99%
//!    46       2432       65536       26      3.52%      8.55%
//!    47       2688       65536       24      1.56%     10.90%
//!    48       2944       65536       22      1.17%      9.73%
//!    49       3200       65536       20      2.34%     10.13%
//!    50       3584       65536       18      1.56%     12.08%
//!    51       3968       65536       16      3.12%     12.48%
//!    52       4096       65536       16      0.00%      3.10%
//!    53       4352       65536       15      0.39%      6.23%
//!    54       4608       65536       14      1.56%      7.01%
//!    55       4864       65536       13      3.52%      8.57%
//!    56       5376       65536       12      1.56%     10.92%
//!    57       5888       65536       11      1.17%      9.75%
//!    58       6400       65536       10      2.34%     10.14%
//!    59       7168       65536        9      1.56%     12.10%
//!    60       7936       65536        8      3.12%     12.49%
//!    61       8192       65536        8      0.00%      3.11%
//!    62       9216       65536        7      1.56%     12.49%
//!    63      10240       65536        6      6.25%     15.62%
//!    64      10752       65536        6      1.56%      6.24%
//!    65      11264      131072       11      5.47%      9.76%
//!    66      12288       65536        5      6.25%     14.05%
//!    67      12800       65536        5      2.34%      6.24%
//!    68      13824      131072        9      5.08%     12.10%
//!    69      15360       65536        4      6.25%     15.62%
//!    70      16384       65536        4      0.00%      6.24%
//! 71 classes, worst tail waste 6.25%
//! ```

use crate::addr::PAGE_SIZE;
use static_assertions::const_assert;

/// The largest request served from size classes; larger ones are page runs.
/// See the [module docs](self) for why.
pub const MAX_SMALL: usize = 16 * 1024;

/// Capacity of the generated table (the generator fails to compile if the
/// rule produces more classes).
const MAX_CLASSES: usize = 100;

/// A size class index.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct SizeClass(u8);

/// What strata knows about one size class.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClassInfo {
    /// Bytes per object.
    pub size: u32,
    /// The class's span is `2^span_order` pages.
    pub span_order: u8,
    /// Objects per span.
    pub objects: u16,
    /// `ceil(2^32 / size)`: `(offset * magic) >> 32 == offset / size` for every
    /// offset inside a span, so pointer → object index needs no division.
    pub magic: u32,
}

impl ClassInfo {
    const EMPTY: ClassInfo = ClassInfo {
        size: 0,
        span_order: 0,
        objects: 0,
        magic: 0,
    };

    const fn new(size: usize, span_order: u32) -> ClassInfo {
        let span = PAGE_SIZE << span_order;
        ClassInfo {
            size: size as u32,
            span_order: span_order as u8,
            objects: (span / size) as u16,
            magic: ((1u64 << 32) / size as u64 + 1) as u32,
        }
    }

    /// Bytes per span.
    #[inline(always)]
    pub const fn span_bytes(&self) -> usize {
        PAGE_SIZE << self.span_order
    }

    /// Bytes at the end of a span that hold no object.
    pub const fn tail_waste(&self) -> usize {
        self.span_bytes() - self.objects as usize * self.size as usize
    }

    /// Index of the object at byte `offset` of a span (offset < span bytes).
    #[inline(always)]
    pub const fn index_of(&self, offset: usize) -> usize {
        ((offset as u64 * self.magic as u64) >> 32) as usize
    }
}

impl ClassInfo {
    /// The fallback span of a class of `size`-byte objects whose own span
    /// is `preferred` (see the [module docs](self)): the smallest order
    /// that holds one object, or `preferred` if that is no smaller.
    const fn fallback(size: usize, preferred: u32) -> ClassInfo {
        let mut order = 0;
        while (PAGE_SIZE << order) < size {
            order += 1;
        }
        if order > preferred {
            order = preferred;
        }
        ClassInfo::new(size, order)
    }
}

/// Fewest objects a span should hold, so that a span is made or given
/// back once per batch of a CPU cache, not once per few objects
/// (TCMalloc sizes spans for whole batches the same way).
const MIN_SPAN_OBJECTS: usize = 32;
/// The object count that decides which sizes share a class (see the
/// module docs): the Go runtime's rule, with spans of at least 8 objects.
const MERGE_SPAN_OBJECTS: usize = 8;
/// Largest span order the object-count rule may ask for (64 KiB).
const MAX_SPAN_ORDER_FOR_COUNT: u32 = 4;

/// The smallest span order whose tail waste is at most 1/8 and that holds
/// at least `min_objects` (up to 64 KiB spans).
const fn span_order_for(size: usize, min_objects: usize) -> u32 {
    let mut order = 0;
    while (PAGE_SIZE << order) % size > (PAGE_SIZE << order) / 8
        || ((PAGE_SIZE << order) / size < min_objects && order < MAX_SPAN_ORDER_FOR_COUNT)
    {
        order += 1;
    }
    order
}

/// Runs the class rule of the module docs up to `max_small`.
/// Returns the table and the number of classes.
pub const fn generate(max_small: usize) -> ([ClassInfo; MAX_CLASSES], usize) {
    let mut out = [ClassInfo::EMPTY; MAX_CLASSES];
    // Each class's size with spans of `MERGE_SPAN_OBJECTS`.
    let mut keys = [ClassInfo::EMPTY; MAX_CLASSES];
    let mut n = 0;
    let mut step = 8;
    let mut size = 8;
    while size <= max_small {
        if size.is_power_of_two() {
            step = if size >= 512 {
                size / 16
            } else if size >= 128 {
                size / 8
            } else if size >= 32 {
                16
            } else {
                8
            };
        }
        let c = ClassInfo::new(size, span_order_for(size, MIN_SPAN_OBJECTS));
        let key = ClassInfo::new(size, span_order_for(size, MERGE_SPAN_OBJECTS));
        let merge = n >= 2
            && keys[n - 1].span_order == key.span_order
            && keys[n - 1].objects == key.objects
            && !(out[n - 1].size as usize).is_power_of_two()
            && (size <= 128 || (size - out[n - 2].size as usize) * 8 <= out[n - 2].size as usize);
        if merge {
            out[n - 1] = c;
            keys[n - 1] = key;
        } else {
            out[n] = c;
            keys[n] = key;
            n += 1;
        }
        size += step;
    }
    (out, n)
}

const GENERATED: ([ClassInfo; MAX_CLASSES], usize) = generate(MAX_SMALL);

/// Number of size classes.
pub const NUM_CLASSES: usize = GENERATED.1;

/// The size-class table, smallest first.
pub static CLASSES: [ClassInfo; NUM_CLASSES] = CLASS_TABLE;

/// [`CLASSES`] as a constant, for tables derived from it at compile time.
pub(crate) const CLASS_TABLE: [ClassInfo; NUM_CLASSES] = {
    let mut t = [ClassInfo::EMPTY; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        t[i] = GENERATED.0[i];
        i += 1;
    }
    t
};

const fn check_table() -> bool {
    let (t, n) = GENERATED;
    let mut i = 0;
    while i < n {
        let c = t[i];
        // tail waste at most 12.5 %
        if c.tail_waste() * 8 > c.span_bytes() {
            return false;
        }
        if i > 0 {
            let prev = t[i - 1].size as usize;
            // sorted
            if c.size as usize <= prev {
                return false;
            }
            // gap at most 12.5 % above 128 bytes
            if prev >= 128 && (c.size as usize - prev) * 8 > prev {
                return false;
            }
        }
        i += 1;
    }
    // every power of two from 8 to MAX_SMALL is a class
    let mut p = 8;
    while p <= MAX_SMALL {
        let mut found = false;
        let mut j = 0;
        while j < n {
            if t[j].size as usize == p {
                found = true;
            }
            j += 1;
        }
        if !found {
            return false;
        }
        p *= 2;
    }
    t[n - 1].size as usize == MAX_SMALL
}

/// The largest span order of any class.
pub const MAX_SPAN_ORDER: u32 = {
    let mut max = 0;
    let mut i = 0;
    while i < NUM_CLASSES {
        if GENERATED.0[i].span_order as u32 > max {
            max = GENERATED.0[i].span_order as u32;
        }
        i += 1;
    }
    max
};

/// The fallback span of each class (see the [module docs](self)), indexed
/// like [`CLASSES`].
pub(crate) static FALLBACK_SPANS: [ClassInfo; NUM_CLASSES] = FALLBACK_TABLE;

/// [`FALLBACK_SPANS`] as a constant.
pub(crate) const FALLBACK_TABLE: [ClassInfo; NUM_CLASSES] = {
    let mut t = [ClassInfo::EMPTY; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        let c = CLASS_TABLE[i];
        t[i] = ClassInfo::fallback(c.size as usize, c.span_order as u32);
        i += 1;
    }
    t
};

const_assert!(check_table());
const_assert!(NUM_CLASSES < MAX_CLASSES);
const_assert!(NUM_CLASSES <= u8::MAX as usize);
// Object indices of a span and the free-list links fit in u16.
const_assert!(PAGE_SIZE / 8 < u16::MAX as usize);
// `index_of` is exact when offset * size < 2^32 for every offset in a span.
const_assert!(MAX_SMALL * (PAGE_SIZE << MAX_SPAN_ORDER) <= 1 << 32);

/// `SIZE_TO_CLASS[(size + 7) / 8]` for every size up to `MAX_SMALL`: one
/// comparison and one load (2 KiB of table; Go splits it in two to save
/// space, at the price of a second comparison on the hot path).
static SIZE_TO_CLASS: [u8; MAX_SMALL / 8 + 1] = small_lookup::<{ MAX_SMALL / 8 + 1 }>(8, 0);

const fn small_lookup<const N: usize>(step: usize, base: usize) -> [u8; N] {
    let (t, n) = GENERATED;
    let mut out = [0u8; N];
    let mut i = 0;
    let mut c = 0;
    while i < N {
        let size = base + i * step;
        while c < n && (t[c].size as usize) < size {
            c += 1;
        }
        out[i] = c as u8;
        i += 1;
    }
    out
}

impl SizeClass {
    /// The class with this index.
    ///
    /// # Panics
    /// If `index >= NUM_CLASSES`.
    pub const fn new(index: usize) -> SizeClass {
        assert!(index < NUM_CLASSES, "size class index out of range");
        SizeClass(index as u8)
    }

    /// The index into [`CLASSES`].
    #[inline(always)]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The class's parameters.
    #[inline(always)]
    pub fn info(self) -> &'static ClassInfo {
        // SAFETY: a SizeClass is only made with an index below NUM_CLASSES.
        unsafe { CLASSES.get_unchecked(self.0 as usize) }
    }

    /// The parameters of the class's fallback span: the smallest span
    /// that holds one object (the class's own span if that is no larger).
    #[inline(always)]
    pub fn fallback(self) -> &'static ClassInfo {
        // SAFETY: as in `info`.
        unsafe { FALLBACK_SPANS.get_unchecked(self.0 as usize) }
    }

    /// Bytes per object.
    #[inline(always)]
    pub fn size(self) -> usize {
        self.info().size as usize
    }

    /// The smallest class that holds `size` bytes, if `size <= MAX_SMALL`.
    ///
    /// # Time Complexity
    /// O(1): one comparison and one table load.
    #[inline(always)]
    pub fn for_size(size: usize) -> Option<SizeClass> {
        if size <= MAX_SMALL {
            Some(SizeClass(SIZE_TO_CLASS[(size + 7) >> 3]))
        } else {
            None
        }
    }

    /// The smallest class whose objects hold `size` bytes at alignment
    /// `align` (a power of two), if any.
    ///
    /// # Time Complexity
    /// O(1) for `align <= 8`; otherwise O(1) in practice (a few steps at
    /// most, since every power of two is a class).
    #[inline(always)]
    pub fn for_layout(size: usize, align: usize) -> Option<SizeClass> {
        if align <= 8 {
            Self::for_size(size)
        } else {
            Self::for_aligned(size, align)
        }
    }

    #[inline(never)]
    fn for_aligned(size: usize, align: usize) -> Option<SizeClass> {
        if align > PAGE_SIZE {
            return None;
        }
        let rounded = size.checked_add(align - 1)? & !(align - 1);
        let mut c = Self::for_size(rounded)?.index();
        // Terminates: the power of two at or above `rounded` is a class and a
        // multiple of `align`.
        while CLASSES[c].size as usize & (align - 1) != 0 {
            c += 1;
        }
        Some(SizeClass(c as u8))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::println;

    #[test]
    fn lookup_is_smallest_fitting_class() {
        for size in 0..=MAX_SMALL {
            let c = SizeClass::for_size(size).unwrap();
            assert!(c.size() >= size, "size {size} -> {}", c.size());
            if c.index() > 0 {
                assert!((CLASSES[c.index() - 1].size as usize) < size || size == 0);
            }
        }
        assert_eq!(SizeClass::for_size(MAX_SMALL + 1), None);
    }

    #[test]
    fn aligned_classes_are_aligned_and_smallest() {
        let mut align = 1;
        while align <= PAGE_SIZE {
            for size in (1..=MAX_SMALL).step_by(7) {
                let Some(c) = SizeClass::for_layout(size, align) else {
                    assert!(size.next_multiple_of(align) > MAX_SMALL);
                    continue;
                };
                assert!(c.size() >= size && c.size() % align == 0);
                for smaller in &CLASSES[..c.index()] {
                    let s = smaller.size as usize;
                    assert!(s < size || s % align != 0);
                }
            }
            align *= 2;
        }
        assert_eq!(SizeClass::for_layout(8, 8192), None);
    }

    #[test]
    fn fallback_spans_are_the_smallest_that_hold_an_object() {
        for (c, f) in CLASSES.iter().zip(FALLBACK_SPANS.iter()) {
            assert_eq!((f.size, f.magic), (c.size, c.magic));
            assert!(f.span_order <= c.span_order && f.objects >= 1);
            if f.span_order < c.span_order {
                assert!(f.span_order == 0 || (f.span_bytes() / 2) < f.size as usize);
            }
        }
        // Classes with spans of several pages fall back to fewer (1 KiB:
        // 8 pages to 1; 16 KiB: 16 pages to 4).
        assert_eq!(SizeClass::for_size(1024).unwrap().fallback().span_order, 0);
        assert_eq!(SizeClass::for_size(16384).unwrap().fallback().span_order, 2);
    }

    #[test]
    fn magic_division_is_exact() {
        for c in CLASSES.iter() {
            for off in 0..c.span_bytes() {
                assert_eq!(
                    c.index_of(off),
                    off / c.size as usize,
                    "class {c:?} offset {off}"
                );
            }
        }
    }

    #[test]
    fn print_table() {
        println!("class  bytes/obj  bytes/span  objects  tail waste  max waste");
        let mut prev = 0usize;
        let mut worst_tail: f64 = 0.0;
        for (i, c) in CLASSES.iter().enumerate() {
            let tail = c.tail_waste() as f64 / c.span_bytes() as f64 * 100.0;
            // worst case: every object holds prev+1 bytes
            let used = (prev + 1) * c.objects as usize;
            let max = (c.span_bytes() - used) as f64 / c.span_bytes() as f64 * 100.0;
            worst_tail = worst_tail.max(tail);
            println!(
                "{i:5} {:10} {:11} {:8} {tail:9.2}% {max:9.2}%",
                c.size,
                c.span_bytes(),
                c.objects
            );
            prev = c.size as usize;
        }
        println!(
            "{} classes, worst tail waste {worst_tail:.2}%",
            CLASSES.len()
        );
        assert!(worst_tail <= 12.5);
    }

    /// The measurement behind MAX_SMALL: average waste per octave of
    /// log-uniform request sizes, class rounding against page rounding.
    #[test]
    fn octave_waste() {
        let (table, n) = generate(64 * 1024);
        let mut lo = 4096usize;
        while lo < 64 * 1024 {
            let (mut pages_w, mut class_w, mut total) = (0f64, 0f64, 0f64);
            let steps = 4096;
            for k in 0..steps {
                let size = (lo as f64 * 2f64.powf((k as f64 + 0.5) / steps as f64)) as usize;
                let page_bytes = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
                let c = table[..n].iter().find(|c| c.size as usize >= size).unwrap();
                // class rounding plus this object's share of the span tail
                let class_bytes = c.size as f64 + c.tail_waste() as f64 / c.objects as f64;
                pages_w += (page_bytes - size) as f64;
                class_w += class_bytes - size as f64;
                total += size as f64;
            }
            println!(
                "{:6}..{:6}: pages waste {:5.1}%  classes waste {:5.1}%",
                lo,
                lo * 2,
                pages_w / total * 100.0,
                class_w / total * 100.0
            );
            lo *= 2;
        }
    }
}
