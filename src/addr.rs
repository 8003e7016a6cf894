//! Address newtypes.
//!
//! strata deals in three kinds of numbers that must never be confused:
//! physical addresses ([`PhysAddr`]), virtual addresses ([`VirtAddr`]) and
//! page frame numbers ([`Pfn`]). Each is its own type; converting between
//! them is explicit. Physical memory is only ever touched through the
//! caller's fixed mapping `virt = phys + phys_offset` ([`PhysOffset`]).

use core::fmt;

/// Size of a page: 4 KiB, the base page of x86_64 and of the common
/// aarch64 configuration.
pub const PAGE_SIZE: usize = 4096;
/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;

/// A physical address.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(u64);

/// A virtual address, as the CPU dereferences it.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(usize);

/// A physical page frame number: `phys / PAGE_SIZE`.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Pfn(u64);

impl PhysAddr {
    /// Wraps a raw physical address.
    #[inline]
    pub const fn new(addr: u64) -> Self {
        Self(addr)
    }
    /// The raw value.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// The frame containing this address.
    #[inline]
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
    /// Whether the address is a multiple of [`PAGE_SIZE`].
    #[inline]
    pub const fn is_page_aligned(self) -> bool {
        self.0 % PAGE_SIZE as u64 == 0
    }
}

impl VirtAddr {
    /// Wraps a raw virtual address.
    #[inline]
    pub const fn new(addr: usize) -> Self {
        Self(addr)
    }
    /// The address of a pointer.
    #[inline]
    pub fn from_ptr<T>(ptr: *const T) -> Self {
        Self(ptr as usize)
    }
    /// The raw value.
    #[inline]
    pub const fn as_usize(self) -> usize {
        self.0
    }
    /// The address as a raw pointer.
    ///
    /// The pointer is made with exposed provenance: strata hands out memory
    /// that it reached through the caller's mapping, not through a Rust
    /// allocation, so there is no original pointer to derive it from.
    #[inline]
    pub fn as_mut_ptr<T>(self) -> *mut T {
        core::ptr::with_exposed_provenance_mut(self.0)
    }
    /// The address `bytes` further on.
    #[inline]
    pub const fn add(self, bytes: usize) -> Self {
        Self(self.0 + bytes)
    }
}

impl Pfn {
    /// Wraps a raw frame number.
    #[inline]
    pub const fn new(pfn: u64) -> Self {
        Self(pfn)
    }
    /// The raw value.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// The first byte of the frame.
    #[inline]
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
    /// The frame `n` frames further on.
    #[inline]
    pub const fn add(self, n: u64) -> Self {
        Self(self.0 + n)
    }
}

/// The fixed distance between the physical address of managed memory and
/// the virtual address through which strata touches it
/// (`virt = phys + offset`, wrapping). Zero for identity-mapped firmware;
/// the direct-map base (HHDM) in a higher-half kernel.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub struct PhysOffset(usize);

impl PhysOffset {
    /// Wraps an offset.
    pub const fn new(offset: usize) -> Self {
        Self(offset)
    }
    /// The raw value.
    pub const fn as_usize(self) -> usize {
        self.0
    }
    /// The virtual address of a physical one.
    #[inline]
    pub const fn to_virt(self, phys: PhysAddr) -> VirtAddr {
        VirtAddr((phys.0 as usize).wrapping_add(self.0))
    }
    /// The physical address of a virtual one.
    #[inline]
    pub const fn to_phys(self, virt: VirtAddr) -> PhysAddr {
        PhysAddr(virt.0.wrapping_sub(self.0) as u64)
    }
    /// The largest alignment (in bytes) that the mapping preserves: a
    /// physically aligned block is aligned virtually only up to this.
    pub const fn alignment(self) -> usize {
        if self.0 == 0 {
            1 << (usize::BITS - 1)
        } else {
            1 << self.0.trailing_zeros()
        }
    }
}

/// A half-open range of physical memory `[start, end)`.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
}

impl PhysRange {
    /// The range `[start, end)`.
    pub const fn new(start: PhysAddr, end: PhysAddr) -> Self {
        Self { start, end }
    }
    /// The range of `len` bytes from `start`; `None` if it overflows.
    pub const fn from_start_len(start: PhysAddr, len: u64) -> Option<Self> {
        match start.0.checked_add(len) {
            Some(end) => Some(Self::new(start, PhysAddr(end))),
            None => None,
        }
    }
    /// Bytes in the range (0 if `end` is not above `start`).
    pub const fn len(&self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }
    /// Whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether two ranges share a byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.start.0 < other.end.0 && other.start.0 < self.end.0
    }
}

macro_rules! hex_fmt {
    ($t:ty, $name:literal) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, "({:#x})"), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
        impl fmt::LowerHex for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}
hex_fmt!(PhysAddr, "PhysAddr");
hex_fmt!(VirtAddr, "VirtAddr");
hex_fmt!(Pfn, "Pfn");

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.0, self.end.0)
    }
}
impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_round_trips_and_alignment() {
        let off = PhysOffset::new(0xffff_8000_0000_0000);
        let p = PhysAddr::new(0x1234_5000);
        assert_eq!(off.to_phys(off.to_virt(p)), p);
        assert_eq!(off.to_virt(p).as_usize(), 0xffff_8000_1234_5000);
        assert_eq!(off.alignment(), 1 << 47);
        assert_eq!(PhysOffset::new(0x20_0000).alignment(), 0x20_0000);
        assert!(PhysOffset::new(0).alignment() >= 1 << 62);
    }

    #[test]
    fn ranges() {
        let a = PhysRange::new(PhysAddr::new(0x1000), PhysAddr::new(0x3000));
        let b = PhysRange::new(PhysAddr::new(0x2fff), PhysAddr::new(0x4000));
        let c = PhysRange::new(PhysAddr::new(0x3000), PhysAddr::new(0x4000));
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
        assert!(PhysRange::from_start_len(PhysAddr::new(u64::MAX), 2).is_none());
        assert_eq!(PhysAddr::new(0x5123).pfn(), Pfn::new(5));
        assert_eq!(Pfn::new(5).addr(), PhysAddr::new(0x5000));
    }
}
