//! Errors returned when the heap is set up or grown.

use crate::addr::{PhysAddr, PhysRange};
use core::fmt;

/// Why a region could not be added, or the heap could not be initialised.
///
/// Every variant names the range at fault, so a kernel can print it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HeapError {
    /// The range holds no whole page once its edges are trimmed inward to
    /// page boundaries (or `end <= start`).
    EmptyRegion(PhysRange),
    /// The range shares bytes with a region the heap already manages.
    Overlap {
        /// The range being added.
        new: PhysRange,
        /// The region it collides with.
        existing: PhysRange,
    },
    /// `start + len`, or the virtual address of the range through the
    /// phys→virt offset, does not fit in the address space.
    AddressOverflow {
        /// Start of the range.
        start: PhysAddr,
        /// Its length in bytes.
        len: u64,
    },
    /// The range is too small to hold its own page metadata and one page.
    TooSmall(PhysRange),
    /// The heap already manages [`MAX_REGIONS`](crate::buddy::MAX_REGIONS)
    /// regions.
    TooManyRegions(PhysRange),
    /// `init` was called twice.
    AlreadyInitialized,
    /// The operation needs `init` first.
    NotInitialized,
    /// `max_cpus` is zero, or the phys→virt offset is not page-aligned.
    InvalidConfig,
    /// The range, seen through the phys→virt offset, shares bytes with the
    /// early arena given to [`Heap::init_early`](crate::Heap::init_early).
    OverlapsEarlyArena(PhysRange),
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapError::EmptyRegion(r) => write!(f, "region {r} holds no whole page"),
            HeapError::Overlap { new, existing } => {
                write!(f, "region {new} overlaps managed region {existing}")
            }
            HeapError::AddressOverflow { start, len } => {
                write!(
                    f,
                    "region at {start} of {len:#x} bytes overflows the address space"
                )
            }
            HeapError::TooSmall(r) => write!(f, "region {r} is too small for its metadata"),
            HeapError::TooManyRegions(r) => write!(
                f,
                "region {r}: the heap already manages {} regions",
                crate::buddy::MAX_REGIONS
            ),
            HeapError::AlreadyInitialized => f.write_str("heap already initialised"),
            HeapError::NotInitialized => f.write_str("heap not initialised"),
            HeapError::InvalidConfig => {
                f.write_str("max_cpus must be at least 1 and the phys offset page-aligned")
            }
            HeapError::OverlapsEarlyArena(r) => {
                write!(f, "region {r} overlaps the heap's early arena")
            }
        }
    }
}
