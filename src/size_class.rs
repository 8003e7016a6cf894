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
//! * Each class takes the smallest span of `2^k` pages whose tail (the bytes
//!   left after the last whole object) is at most 1/8 of the span and that
//!   holds at least 8 objects (up to 64 KiB spans), so a span serves whole
//!   batches of the CPU caches.
//! * A size whose span has the same order and the same object count as the
//!   previous class replaces it (it costs nothing more and serves more
//!   sizes), unless that would widen the gap below it beyond 12.5 %.
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
//!    10        144        4096       28      1.56%     11.82%
//!    11        160        4096       25      2.34%     11.50%
//!    12        176        4096       23      1.17%      9.59%
//!    13        192        4096       21      1.56%      9.25%
//!    14        208        4096       19      3.52%     10.47%
//!    15        224        4096       18      1.56%      8.15%
//!    16        240        4096       17      0.39%      6.62%
//!    17        256        4096       16      0.00%      5.86%
//!    18        288        4096       14      1.56%     12.16%
//!    19        320        4096       12      6.25%     15.33%
//!    20        352        4096       11      5.47%     13.79%
//!    21        384        4096       10      6.25%     13.82%
//!    22        416        4096        9      8.59%     15.41%
//!    23        448        4096        9      1.56%      8.37%
//!    24        480        4096        8      6.25%     12.30%
//!    25        512        4096        8      0.00%      6.05%
//!    26        544        8192       15      0.39%      6.07%
//!    27        576        8192       14      1.56%      6.86%
//!    28        608        8192       13      3.52%      8.44%
//!    29        672        8192       12      1.56%     10.79%
//!    30        736        8192       11      1.17%      9.63%
//!    31        800        8192       10      2.34%     10.03%
//!    32        896        8192        9      1.56%     12.00%
//!    33        992        8192        8      3.12%     12.40%
//!    34       1024        8192        8      0.00%      3.03%
//!    35       1088       16384       15      0.39%      6.16%
//!    36       1152       16384       14      1.56%      6.95%
//!    37       1216       16384       13      3.52%      8.51%
//!    38       1344       16384       12      1.56%     10.86%
//!    39       1472       16384       11      1.17%      9.70%
//!    40       1600       16384       10      2.34%     10.10%
//!    41       1792       16384        9      1.56%     12.05%
//!    42       1984       16384        8      3.12%     12.45%
//!    43       2048       16384        8      0.00%      3.08%
//!    44       2176       32768       15      0.39%      6.20%
//!    45       2304       32768       14      1.56%      6.99%
//!    46       2432       32768       13      3.52%      8.55%
//!    47       2688       32768       12      1.56%     10.90%
//!    48       2944       32768       11      1.17%      9.73%
//!    49       3200       32768       10      2.34%     10.13%
//!    50       3584       32768        9      1.56%     12.08%
//!    51       3968       32768        8      3.12%     12.48%
//!    52       4096       32768        8      0.00%      3.10%
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
//! 71 classes, worst tail waste 8.59%
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

/// Fewest objects a span should hold, so that a span is made or given
/// back once per batch of a CPU cache, not once per few objects
/// (TCMalloc sizes spans for whole batches the same way).
const MIN_SPAN_OBJECTS: usize = 8;
/// Largest span order the object-count rule may ask for (64 KiB).
const MAX_SPAN_ORDER_FOR_COUNT: u32 = 4;

/// The smallest span order whose tail waste is at most 1/8 and that holds
/// at least [`MIN_SPAN_OBJECTS`] (up to 64 KiB spans).
const fn span_order_for(size: usize) -> u32 {
    let mut order = 0;
    while (PAGE_SIZE << order) % size > (PAGE_SIZE << order) / 8
        || ((PAGE_SIZE << order) / size < MIN_SPAN_OBJECTS && order < MAX_SPAN_ORDER_FOR_COUNT)
    {
        order += 1;
    }
    order
}

/// Runs the class rule of the module docs up to `max_small`.
/// Returns the table and the number of classes.
pub const fn generate(max_small: usize) -> ([ClassInfo; MAX_CLASSES], usize) {
    let mut out = [ClassInfo::EMPTY; MAX_CLASSES];
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
        let c = ClassInfo::new(size, span_order_for(size));
        let merge = n >= 2
            && out[n - 1].span_order == c.span_order
            && out[n - 1].objects == c.objects
            && !(out[n - 1].size as usize).is_power_of_two()
            && (size <= 128 || (size - out[n - 2].size as usize) * 8 <= out[n - 2].size as usize);
        if merge {
            out[n - 1] = c;
        } else {
            out[n] = c;
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
