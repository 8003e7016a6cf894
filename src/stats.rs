//! Statistics: a copyable snapshot of every layer's counters.
//!
//! [`HeapStats`] is plain data (no pointers, no allocation), so a kernel can
//! take one from any context and print it on a serial console with its
//! [`Display`](core::fmt::Display) table. Counters of different layers are
//! read one after another, not atomically together: on a busy heap the
//! totals can disagree by the objects in flight.

use crate::addr::PAGE_SIZE;
use crate::buddy::{PageStats, ORDERS};
use crate::central::ClassStats;
use crate::cpu_cache::CpuStats;
use crate::size_class::{CLASSES, NUM_CLASSES};
use core::fmt;

/// CPUs whose cache counters a snapshot carries one by one (all CPUs count
/// in the totals).
pub const STATS_CPUS: usize = 64;

/// A snapshot of the heap; see the [module docs](self).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// The page heap.
    pub pages: PageStats,
    /// Per size class.
    pub classes: [ClassStats; NUM_CLASSES],
    /// CPUs with a cache (`max_cpus`).
    pub cpus: usize,
    /// Per CPU, the first [`STATS_CPUS`].
    pub per_cpu: [CpuStats; STATS_CPUS],
    /// Objects in all CPU caches.
    pub cached_objects: u64,
    /// Bytes of those objects.
    pub cached_bytes: u64,
    /// Single pages on all CPUs' page lists (free, but not in the page
    /// heap's free count).
    pub cached_pages: u64,
    /// Live page runs (large blocks and page API; pages on CPU page lists
    /// are not counted).
    pub large_runs: u64,
    /// Pages in those runs.
    pub large_pages: u64,
}

impl Default for HeapStats {
    fn default() -> Self {
        HeapStats {
            pages: PageStats::default(),
            classes: [ClassStats::default(); NUM_CLASSES],
            cpus: 0,
            per_cpu: [CpuStats::default(); STATS_CPUS],
            cached_objects: 0,
            cached_bytes: 0,
            cached_pages: 0,
            large_runs: 0,
            large_pages: 0,
        }
    }
}

impl HeapStats {
    /// Pages free: in the page heap, or on a CPU's page list.
    pub fn free_pages(&self) -> u64 {
        self.pages.free_pages + self.cached_pages
    }
    /// Pages managed (metadata excluded).
    pub fn managed_pages(&self) -> u64 {
        self.pages.managed_pages
    }
    /// Metadata as a fraction of all memory given to the heap.
    pub fn metadata_ratio(&self) -> f64 {
        let total = self.pages.managed_pages + self.pages.metadata_pages;
        if total == 0 {
            0.0
        } else {
            self.pages.metadata_pages as f64 / total as f64
        }
    }
    /// Small objects handed to callers (out of spans, not in a CPU cache).
    pub fn small_objects_in_use(&self) -> u64 {
        let out: u64 = self.classes.iter().map(|c| c.objects_out).sum();
        out.saturating_sub(self.cached_objects)
    }
    /// Pages held by spans.
    pub fn span_pages(&self) -> u64 {
        self.classes.iter().map(|c| c.span_pages).sum()
    }
}

struct Bytes(u64);
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 10 << 30 {
            write!(f, "{} GiB", b >> 30)
        } else if b >= 10 << 20 {
            write!(f, "{} MiB", b >> 20)
        } else if b >= 10 << 10 {
            write!(f, "{} KiB", b >> 10)
        } else {
            write!(f, "{b} B")
        }
    }
}

impl fmt::Display for HeapStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.pages;
        let page = PAGE_SIZE as u64;
        writeln!(f, "strata heap: {} regions", p.regions)?;
        writeln!(
            f,
            "  pages: managed {} ({}), free {}, in use {}, peak {}, metadata {} ({:.2}%)",
            p.managed_pages,
            Bytes(p.managed_pages * page),
            self.free_pages(),
            p.managed_pages - self.free_pages(),
            p.peak_used_pages,
            p.metadata_pages,
            self.metadata_ratio() * 100.0
        )?;
        write!(f, "  free blocks by order:")?;
        for (o, n) in p.free_blocks.iter().enumerate().take(ORDERS) {
            if *n != 0 {
                write!(f, " {o}:{n}")?;
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "  large runs: {} ({} pages); span pages: {}; small objects in use: {}",
            self.large_runs,
            self.large_pages,
            self.span_pages(),
            self.small_objects_in_use()
        )?;
        writeln!(f, "  class   size  spans  empty      out")?;
        for (i, c) in self.classes.iter().enumerate() {
            if c.spans != 0 || c.objects_out != 0 {
                writeln!(
                    f,
                    "  {i:5} {:6} {:6} {:6} {:8}",
                    CLASSES[i].size, c.spans, c.empty_spans, c.objects_out
                )?;
            }
        }
        writeln!(
            f,
            "  cpu   cached objs   cached bytes       hits  refills  flushes  fallbacks"
        )?;
        let mut idle = 0;
        for (cpu, c) in self
            .per_cpu
            .iter()
            .enumerate()
            .take(self.cpus.min(STATS_CPUS))
        {
            if *c == CpuStats::default() {
                idle += 1;
                continue;
            }
            writeln!(
                f,
                "  {cpu:3} {:13} {:14} {:10} {:8} {:8} {:10}",
                c.cached_objects, c.cached_bytes, c.hits, c.refills, c.flushes, c.fallbacks
            )?;
        }
        if idle > 0 {
            writeln!(f, "  ({idle} CPUs never used their cache)")?;
        }
        if self.cpus > STATS_CPUS {
            writeln!(f, "  ... {} more CPUs", self.cpus - STATS_CPUS)?;
        }
        write!(
            f,
            "  all cpus: {} objects, {} cached; {} pages on page lists",
            self.cached_objects,
            Bytes(self.cached_bytes),
            self.cached_pages
        )
    }
}
