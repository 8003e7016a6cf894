//! The machine's memory map, from the PVH `hvm_start_info` that QEMU
//! passes in EBX, and the ranges handed to strata.
//!
//! `hvm_start_info` (version 1 and later) points to an e820-style table of
//! `{ addr, size, type }` entries; type 1 is usable RAM. [`BootInfo::read`]
//! copies that table and the command line into the kernel image first, so
//! the firmware's copies need no protection afterwards.
//!
//! [`usable_regions`] then takes every RAM range and removes
//! - the first [`LOW_RESERVED`] bytes: the real-mode IVT and BIOS data area,
//!   and the AP trampoline page at `boot::TRAMPOLINE_BASE`;
//! - the kernel image (`__kernel_start .. __kernel_end`, which includes the
//!   boot page tables, the stacks and the boot data copied here);
//! - whatever lies beyond the identity map.
//!
//! The rest of the low 1 MiB RAM stays in: it is what `alloc_pages` below
//! 1 MiB serves (and EBDA/ROM areas are not type 1 in QEMU's map).

use strata_alloc::{PhysAddr, PhysRange, PAGE_SIZE};

/// `hvm_start_info.magic`.
const START_INFO_MAGIC: u32 = 0x336E_C578;
/// e820 type of usable RAM.
const TYPE_RAM: u32 = 1;
/// Most memory map entries kept.
pub const MAX_ENTRIES: usize = 64;
/// Most regions handed to the heap.
pub const MAX_REGIONS: usize = 16;
/// Longest command line kept, in bytes.
const MAX_CMDLINE: usize = 256;
/// Low memory never handed to the heap: the IVT and BDA (first 4 KiB) and
/// the AP trampoline page at 0x8000, rounded up to 64 KiB.
pub const LOW_RESERVED: u64 = 0x1_0000;

/// `struct hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h).
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// `struct hvm_memmap_table_entry`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct MemoryEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    reserved: u32,
}

impl MemoryEntry {
    const EMPTY: MemoryEntry = MemoryEntry {
        addr: 0,
        size: 0,
        kind: 0,
        reserved: 0,
    };

    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }

    pub fn is_ram(&self) -> bool {
        self.kind == TYPE_RAM
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            1 => "RAM",
            2 => "reserved",
            3 => "ACPI reclaimable",
            4 => "ACPI NVS",
            5 => "unusable",
            _ => "other",
        }
    }
}

/// What the kernel keeps from `hvm_start_info`.
pub struct BootInfo {
    /// Where QEMU put `hvm_start_info`.
    pub start_info: u64,
    entries: [MemoryEntry; MAX_ENTRIES],
    entry_count: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
}

impl BootInfo {
    /// Copies the memory map and command line out of `hvm_start_info`.
    ///
    /// # Safety
    /// `start_info` is the physical address QEMU passed in EBX at the PVH
    /// entry, and the memory it and its tables occupy is identity-mapped
    /// and not yet reused.
    pub unsafe fn read(start_info: u64) -> Result<BootInfo, &'static str> {
        // SAFETY: per the caller, a valid hvm_start_info lies there.
        let header = unsafe { (start_info as *const StartInfo).read_unaligned() };
        if header.magic != START_INFO_MAGIC {
            return Err("bad hvm_start_info magic");
        }
        if header.version < 1 || header.memmap_paddr == 0 {
            return Err("hvm_start_info has no memory map (version 0)");
        }
        let mut info = BootInfo {
            start_info,
            entries: [MemoryEntry::EMPTY; MAX_ENTRIES],
            entry_count: (header.memmap_entries as usize).min(MAX_ENTRIES),
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
        };
        let table = header.memmap_paddr as *const MemoryEntry;
        for (index, entry) in info.entries[..info.entry_count].iter_mut().enumerate() {
            // SAFETY: the table has `memmap_entries` entries (per the PVH
            // contract the caller vouches for) and index is below that.
            *entry = unsafe { table.add(index).read_unaligned() };
        }
        if header.cmdline_paddr != 0 {
            let text = header.cmdline_paddr as *const u8;
            while info.cmdline_len < MAX_CMDLINE {
                // SAFETY: the command line is a NUL-terminated string; we
                // stop at the NUL (or our buffer's end).
                let byte = unsafe { text.add(info.cmdline_len).read() };
                if byte == 0 {
                    break;
                }
                info.cmdline[info.cmdline_len] = byte;
                info.cmdline_len += 1;
            }
        }
        Ok(info)
    }

    /// The memory map entries, as the firmware listed them.
    pub fn entries(&self) -> &[MemoryEntry] {
        &self.entries[..self.entry_count]
    }

    /// The kernel command line (`-append`), or "" if not UTF-8.
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// The end of the highest RAM range.
    pub fn ram_end(&self) -> u64 {
        self.entries()
            .iter()
            .filter(|e| e.is_ram())
            .map(MemoryEntry::end)
            .max()
            .unwrap_or(0)
    }
}

/// The physical ranges handed to the heap.
pub struct Regions {
    ranges: [PhysRange; MAX_REGIONS],
    count: usize,
    /// RAM left out because there were more than [`MAX_REGIONS`] ranges.
    pub dropped: usize,
}

impl Regions {
    pub fn as_slice(&self) -> &[PhysRange] {
        &self.ranges[..self.count]
    }

    fn push(&mut self, start: u64, end: u64) {
        let page = PAGE_SIZE as u64;
        let (start, end) = (start.next_multiple_of(page), end / page * page);
        if start >= end {
            return;
        }
        if self.count == MAX_REGIONS {
            self.dropped += 1;
            return;
        }
        self.ranges[self.count] = PhysRange::new(PhysAddr::new(start), PhysAddr::new(end));
        self.count += 1;
    }
}

extern "C" {
    /// First byte of the kernel image (linker script).
    static __kernel_start: u8;
    /// First byte after the kernel image, its .bss included.
    static __kernel_end: u8;
}

/// The physical range the kernel image occupies.
pub fn kernel_image() -> (u64, u64) {
    (
        core::ptr::addr_of!(__kernel_start) as u64,
        core::ptr::addr_of!(__kernel_end) as u64,
    )
}

/// Every RAM range of `info` below `mapped_end`, minus the low reserved
/// area and the kernel image, page-aligned inward.
pub fn usable_regions(info: &BootInfo, mapped_end: u64) -> Regions {
    let (kernel_start, kernel_end) = kernel_image();
    let mut regions = Regions {
        ranges: [PhysRange::new(PhysAddr::new(0), PhysAddr::new(0)); MAX_REGIONS],
        count: 0,
        dropped: 0,
    };
    for entry in info.entries().iter().filter(|e| e.is_ram()) {
        let start = entry.addr.max(LOW_RESERVED);
        let end = entry.end().min(mapped_end);
        if start >= end {
            continue;
        }
        if kernel_end <= start || kernel_start >= end {
            regions.push(start, end);
        } else {
            regions.push(start, kernel_start);
            regions.push(kernel_end, end);
        }
    }
    regions
}
