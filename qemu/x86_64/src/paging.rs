//! The identity map beyond what the boot assembly set up.
//!
//! At boot the first 4 GiB are identity-mapped with 2 MiB pages. Once the
//! memory map is known, [`map_above_4g`] extends the map over RAM above
//! 4 GiB (QEMU puts RAM there when `-m` exceeds the space below the PCI
//! hole), up to [`MAPPABLE_END`], using the spare page directories of the
//! boot tables. It also marks the local APIC's page uncached. Everything
//! runs on the bootstrap CPU before the APs start, and the APs load the same
//! tables.

use crate::boot::{BOOT_TABLES, PAGE_DIRECTORIES};
use crate::{apic, cpu};

const GIB: u64 = 1 << 30;
const HUGE_PAGE: u64 = 2 << 20;
/// Entry flags: present, writable.
const PRESENT_WRITABLE: u64 = 0x3;
/// PD entry flag: 2 MiB page.
const HUGE: u64 = 0x80;
/// Page-level write-through and cache disable.
const UNCACHED: u64 = 0x18;

/// End of what the boot tables can map: one page directory per GiB.
pub const MAPPABLE_END: u64 = PAGE_DIRECTORIES as u64 * GIB;

/// Identity-maps `[4 GiB, end)` (clamped to [`MAPPABLE_END`]) and marks the
/// APIC page uncached. Returns the end of the identity map.
pub fn map_above_4g(end: u64) -> u64 {
    let end = end.clamp(4 * GIB, MAPPABLE_END);
    // SAFETY: only the bootstrap CPU runs, so nothing else accesses the
    // tables; the entries written map physical memory to the same addresses
    // and change no existing mapping other than the APIC page's caching.
    let tables = unsafe { &mut *BOOT_TABLES.0.get() };
    let directories = end.div_ceil(GIB) as usize;
    for gib in 4..directories {
        let directory = &mut tables.pd[gib];
        for (slot, entry) in directory.0.iter_mut().enumerate() {
            *entry = (gib as u64 * GIB + slot as u64 * HUGE_PAGE) | HUGE | PRESENT_WRITABLE;
        }
        let directory_phys = directory as *const _ as u64;
        tables.pdpt.0[gib] = directory_phys | PRESENT_WRITABLE;
    }
    let apic_page = (apic::BASE / HUGE_PAGE) as usize;
    tables.pd[apic_page / 512].0[apic_page % 512] |= UNCACHED;
    cpu::flush_tlb();
    directories as u64 * GIB
}
