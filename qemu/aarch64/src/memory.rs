//! The usable-memory computation: RAM from the device tree minus everything
//! that is already in use when the kernel starts.
//!
//! Works on fixed-capacity lists because it runs before there is a heap.
//! Ranges are half-open `[start, end)` physical addresses; with the identity
//! map they are also the virtual addresses.

use core::fmt;

/// Most ranges one list holds. `-M virt` describes RAM with one node per NUMA
/// node (at most a handful) and the kernel cuts each in at most three pieces.
pub const MAX_RANGES: usize = 32;

/// A half-open physical address range.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    /// `[start, start + size)`, clamped at the top of the address space.
    pub fn from_base_size(start: u64, size: u64) -> Self {
        Self {
            start,
            end: start.saturating_add(size),
        }
    }

    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:#011x}, {:#011x}) {:>6} KiB",
            self.start,
            self.end,
            self.len() / 1024
        )
    }
}

/// Why a range could not be recorded.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ListFull;

/// A sorted list of disjoint ranges with a fixed capacity.
#[derive(Copy, Clone)]
pub struct RangeList {
    ranges: [Range; MAX_RANGES],
    len: usize,
}

impl RangeList {
    pub const fn new() -> Self {
        Self {
            ranges: [Range { start: 0, end: 0 }; MAX_RANGES],
            len: 0,
        }
    }

    pub fn as_slice(&self) -> &[Range] {
        &self.ranges[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total bytes covered.
    pub fn total(&self) -> u64 {
        self.as_slice().iter().map(Range::len).sum()
    }

    /// Adds `range`, merging it with any range it overlaps. Ranges that only
    /// touch stay separate, so adjacent memory nodes (one per NUMA node)
    /// remain separate heap regions.
    pub fn add(&mut self, range: Range) -> Result<(), ListFull> {
        if range.is_empty() {
            return Ok(());
        }
        let mut merged = range;
        let mut out = Self::new();
        let mut placed = false;
        for &r in self.as_slice() {
            if r.end <= merged.start {
                out.push(r)?;
            } else if merged.end <= r.start {
                if !placed {
                    out.push(merged)?;
                    placed = true;
                }
                out.push(r)?;
            } else {
                merged = Range {
                    start: merged.start.min(r.start),
                    end: merged.end.max(r.end),
                };
            }
        }
        if !placed {
            out.push(merged)?;
        }
        *self = out;
        Ok(())
    }

    /// Removes `hole` from every range, splitting where needed.
    pub fn remove(&mut self, hole: Range) -> Result<(), ListFull> {
        if hole.is_empty() {
            return Ok(());
        }
        let mut out = Self::new();
        for &r in self.as_slice() {
            if hole.end <= r.start || r.end <= hole.start {
                out.push(r)?;
                continue;
            }
            let below = Range {
                start: r.start,
                end: hole.start,
            };
            let above = Range {
                start: hole.end,
                end: r.end,
            };
            if !below.is_empty() {
                out.push(below)?;
            }
            if !above.is_empty() {
                out.push(above)?;
            }
        }
        *self = out;
        Ok(())
    }

    /// Keeps only the parts of every range inside `window`.
    pub fn clip(&mut self, window: Range) -> Result<(), ListFull> {
        self.remove(Range {
            start: 0,
            end: window.start,
        })?;
        self.remove(Range {
            start: window.end,
            end: u64::MAX,
        })
    }

    fn push(&mut self, r: Range) -> Result<(), ListFull> {
        let slot = self.ranges.get_mut(self.len).ok_or(ListFull)?;
        *slot = r;
        self.len += 1;
        Ok(())
    }
}

impl Default for RangeList {
    fn default() -> Self {
        Self::new()
    }
}
