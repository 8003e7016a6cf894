//! Checks on what an allocator hands back, so that a fast but wrong
//! allocator cannot win: alignment, range (for region-based allocators) and
//! a tag written at both ends of every block and verified before it is
//! freed. A failed check ends the whole run with a message naming the
//! allocator, the workload and the block.

use core::alloc::Layout;

/// Prints a check failure and exits the process with status 2.
#[cold]
pub fn fail(allocator: &str, workload: &str, msg: &str) -> ! {
    eprintln!("CHECK FAILED: allocator `{allocator}`, workload `{workload}`: {msg}");
    std::process::exit(2);
}

/// Where checks report: the allocator and workload names, and the address
/// range a region-based allocator must stay inside.
#[derive(Clone, Copy, Debug)]
pub struct Checker {
    pub allocator: &'static str,
    pub workload: &'static str,
    /// `[lo, hi)` for region-based allocators; `(0, usize::MAX)` otherwise.
    pub range: (usize, usize),
}

impl Checker {
    #[cold]
    fn fail(&self, msg: &str) -> ! {
        fail(self.allocator, self.workload, msg)
    }

    /// Checks a freshly allocated block and tags it. Null is a failure.
    ///
    /// # Safety
    /// `p` is null or a block of at least `layout.size()` bytes that the
    /// caller owns.
    #[inline]
    pub unsafe fn accept(&self, p: *mut u8, layout: Layout, tag: u64) {
        if p.is_null() {
            self.fail(&format!("out of memory for {layout:?}"));
        }
        // SAFETY: forwarded caller contract; `p` is not null.
        unsafe { self.accept_nonnull(p, layout, tag) }
    }

    /// As [`Checker::accept`] for a pointer known to be non-null.
    ///
    /// # Safety
    /// `p` is a block of at least `layout.size()` bytes that the caller owns.
    #[inline]
    pub unsafe fn accept_nonnull(&self, p: *mut u8, layout: Layout, tag: u64) {
        let a = p as usize;
        if a & (layout.align() - 1) != 0 {
            self.fail(&format!(
                "{p:p} is not aligned to {} for {layout:?}",
                layout.align()
            ));
        }
        if a < self.range.0
            || a.wrapping_add(layout.size()) > self.range.1
            || a.checked_add(layout.size()).is_none()
        {
            self.fail(&format!(
                "block {p:p}+{} lies outside the managed region [{:#x}, {:#x})",
                layout.size(),
                self.range.0,
                self.range.1
            ));
        }
        // SAFETY: the caller owns `layout.size()` bytes at `p`.
        unsafe { write_tag(p, layout.size(), tag) }
    }

    /// Verifies the tag of a block about to be freed.
    ///
    /// # Safety
    /// `p` is a block of at least `size` bytes tagged by [`Checker::accept`].
    #[inline]
    pub unsafe fn verify(&self, p: *mut u8, size: usize, tag: u64) {
        // SAFETY: forwarded caller contract.
        if unsafe { !tag_ok(p, size, tag) } {
            // SAFETY: as above.
            let (h, t) = unsafe { read_tag(p, size) };
            self.fail(&format!(
                "block {p:p} of {size} B was overwritten (overlapping blocks?): \
                 head {h:#x} tail {t:#x}, expected tag {tag:#x}"
            ));
        }
    }
}

/// Writes `tag` at both ends of a block: 8 bytes each for blocks of 16 B or
/// more, one byte each below that.
///
/// # Safety
/// `p` is writable for `size > 0` bytes.
#[inline]
pub unsafe fn write_tag(p: *mut u8, size: usize, tag: u64) {
    // SAFETY: every write stays within `[p, p + size)`.
    unsafe {
        if size >= 16 {
            p.cast::<u64>().write_unaligned(tag);
            p.add(size - 8).cast::<u64>().write_unaligned(!tag);
        } else {
            p.write(tag as u8);
            p.add(size - 1).write((tag >> 8) as u8 ^ 0x5a);
        }
    }
}

/// # Safety
/// `p` is readable for `size > 0` bytes.
#[inline]
unsafe fn read_tag(p: *mut u8, size: usize) -> (u64, u64) {
    // SAFETY: every read stays within `[p, p + size)`.
    unsafe {
        if size >= 16 {
            (
                p.cast::<u64>().read_unaligned(),
                p.add(size - 8).cast::<u64>().read_unaligned(),
            )
        } else {
            (u64::from(p.read()), u64::from(p.add(size - 1).read()))
        }
    }
}

/// Whether a block still carries the tag [`write_tag`] put there.
///
/// # Safety
/// `p` is readable for `size > 0` bytes.
#[inline]
pub unsafe fn tag_ok(p: *mut u8, size: usize, tag: u64) -> bool {
    // SAFETY: forwarded caller contract.
    let (h, t) = unsafe { read_tag(p, size) };
    if size >= 16 {
        h == tag && t == !tag
    } else if size == 1 {
        // Head and tail are the same byte; the tail write won.
        t == u64::from((tag >> 8) as u8 ^ 0x5a)
    } else {
        h == u64::from(tag as u8) && t == u64::from((tag >> 8) as u8 ^ 0x5a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_detect_overwrites() {
        for size in [1usize, 2, 7, 8, 15, 16, 17, 64, 1000] {
            let mut buf = vec![0u8; size];
            let p = buf.as_mut_ptr();
            // SAFETY: `buf` holds `size` bytes.
            unsafe {
                write_tag(p, size, 0x1234_5678_9abc_def1);
                assert!(tag_ok(p, size, 0x1234_5678_9abc_def1));
                *p.add(size - 1) ^= 1;
                assert!(!tag_ok(p, size, 0x1234_5678_9abc_def1));
            }
        }
    }
}
