//! Identity map for the whole kernel, built at compile time.
//!
//! Why the MMU is on: with the MMU off every data access is Device-nGnRnE,
//! which faults on unaligned accesses and is not what the allocator's atomics
//! are meant to run on. With it on, RAM is Normal write-back cacheable and
//! inner-shareable (what a real kernel's direct map is), unaligned accesses
//! are legal, and MMIO stays Device memory.
//!
//! The map is one level-1 table of 1 GiB blocks (4 KiB granule, 39-bit
//! virtual addresses, so the walk starts at level 1):
//!
//! ```text
//!   [0, 1 GiB)          Device-nGnRE, never executable   GIC, PL011, virtio, PCIe windows
//!   [1 GiB, 256 GiB)    Normal WB, inner shareable       RAM (starts at 1 GiB on -M virt)
//!   [256 GiB, 512 GiB)  unmapped                         -M virt puts its high MMIO here
//! ```
//!
//! RAM outside the normal window (more than 255 GiB) is left out of the heap
//! by the memory-map code. Physical address = virtual address everywhere, so
//! the allocator is initialised with a phys→virt offset of 0.
//!
//! Every CPU enables the MMU from assembly (`boot.rs`) before it runs any
//! Rust code, with the constants below; the table is read-only data, so no
//! CPU ever writes it and no cache maintenance is needed.

/// Entries in one translation table (4 KiB granule, 8-byte descriptors).
const ENTRIES: usize = 512;
/// Bytes mapped by one level-1 block descriptor.
const BLOCK_SIZE: u64 = 1 << 30;
/// First level-1 entry that maps RAM as Normal memory (1 GiB).
const FIRST_NORMAL_ENTRY: usize = 1;
/// One past the last level-1 entry mapped as Normal memory (256 GiB).
const END_NORMAL_ENTRY: usize = 256;
/// Highest physical address (exclusive) that the identity map covers as RAM.
pub const NORMAL_WINDOW_END: u64 = END_NORMAL_ENTRY as u64 * BLOCK_SIZE;

/// `MAIR_EL1`: attribute 0 = Device-nGnRE (0x04), attribute 1 = Normal,
/// inner and outer write-back read/write-allocate (0xff).
pub const MAIR: u64 = 0x04 | (0xff << 8);
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;

/// `TCR_EL1`: T0SZ = 25 (39-bit VA), TTBR0 walks inner/outer write-back
/// write-allocate and inner shareable, 4 KiB granule, TTBR1 walks disabled
/// (EPD1), 40-bit intermediate physical addresses (IPS = 0b010).
pub const TCR: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32);

/// Block descriptor (bits 1:0 = 0b01).
const DESC_BLOCK: u64 = 0b01;
/// Access flag: set so the first access does not fault.
const DESC_AF: u64 = 1 << 10;
/// Inner shareable.
const DESC_SH_INNER: u64 = 3 << 8;
/// Privileged execute-never.
const DESC_PXN: u64 = 1 << 53;
/// Unprivileged execute-never.
const DESC_UXN: u64 = 1 << 54;

/// A 4 KiB-aligned translation table.
#[repr(C, align(4096))]
pub struct Table(pub [u64; ENTRIES]);

const fn build_identity_map() -> Table {
    let mut entries = [0u64; ENTRIES];
    entries[0] = DESC_BLOCK | DESC_AF | ATTR_DEVICE | DESC_PXN | DESC_UXN;
    let mut i = FIRST_NORMAL_ENTRY;
    while i < END_NORMAL_ENTRY {
        entries[i] =
            (i as u64 * BLOCK_SIZE) | DESC_BLOCK | DESC_AF | ATTR_NORMAL | DESC_SH_INNER | DESC_UXN;
        i += 1;
    }
    Table(entries)
}

/// The level-1 table that `TTBR0_EL1` points to on every CPU.
pub static IDENTITY_MAP: Table = build_identity_map();
