//! What the kernel learns from the flattened device tree QEMU generates.
//!
//! Where the blob is: a loader may pass it in x0, but QEMU passes 0 for ELF
//! images and instead copies the blob to the start of RAM (0x40000000 on
//! `-M virt`) when it fits below the kernel, which is why `link.ld` places
//! the kernel 2 MiB into RAM. The kernel takes x0 if it points at a valid
//! header, otherwise the start of RAM, and checks the magic either way.
//!
//! Read here: every node with `device_type = "memory"` (one per NUMA node),
//! the `/memreserve/` block and `/reserved-memory` children, the CPUs' MPIDR
//! affinities, the PSCI conduit (`/psci` `method`), the GICv2 distributor and
//! CPU interface, the PL011, the virtual timer's PPI and `/chosen`
//! `bootargs` (QEMU's `-append`).

use fdt::Fdt;

use crate::memory::{ListFull, Range, RangeList};

/// Start of RAM on `-M virt`, where QEMU leaves the device tree blob.
pub const VIRT_RAM_BASE: u64 = 0x4000_0000;
/// Flattened device tree magic (big-endian in the blob).
const FDT_MAGIC: u32 = 0xd00d_feed;
/// Most CPUs the kernel brings up; more in the tree are left off.
pub const MAX_CPUS: usize = 8;
/// PPI of the EL1 virtual timer on `-M virt` (interrupt 11 of the PPI space)
/// when the timer node cannot be read.
const DEFAULT_VTIMER_PPI: u32 = 27;
/// First interrupt ID of the PPI space in the GIC.
const PPI_BASE: u32 = 16;

/// How PSCI calls reach the firmware.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

/// GICv2 register windows.
#[derive(Copy, Clone, Debug)]
pub struct GicV2 {
    pub distributor: usize,
    pub cpu_interface: usize,
}

/// Everything the kernel needs from the tree, copied out so the parser is
/// not needed afterwards.
pub struct MachineInfo {
    /// Where the blob itself lies.
    pub blob: Range,
    /// RAM as described by the memory nodes.
    pub memory: RangeList,
    /// `/memreserve/` entries and `/reserved-memory` children.
    pub reserved: RangeList,
    /// MPIDR affinity of each CPU, in tree order (the dense CPU index).
    pub cpus: [u64; MAX_CPUS],
    pub cpu_count: usize,
    /// CPUs in the tree, including any beyond [`MAX_CPUS`].
    pub cpus_in_tree: usize,
    pub psci: Option<Conduit>,
    /// `Err` holds the `compatible` of an interrupt controller that is not a
    /// GICv2.
    pub gic: Result<GicV2, &'static str>,
    pub uart: Option<usize>,
    /// Interrupt ID of the EL1 virtual timer.
    pub vtimer_irq: u32,
    /// `/chosen` `bootargs`, empty when absent.
    pub bootargs: &'static str,
}

/// Why the device tree could not be used.
#[derive(Copy, Clone, Debug)]
pub enum DtbError {
    /// No valid header at the address passed in x0 nor at the start of RAM.
    NotFound,
    /// The parser rejected the blob.
    Invalid(fdt::FdtError),
    /// More memory or reserved ranges than the fixed lists hold.
    TooManyRanges,
    /// A CPU node without a `reg` property.
    BadCpuNode,
}

impl From<ListFull> for DtbError {
    fn from(_: ListFull) -> Self {
        DtbError::TooManyRanges
    }
}

/// Whether a flattened device tree header starts at `addr`.
///
/// # Safety
/// `addr` must be 0 or a readable, 4-byte aligned address.
unsafe fn has_fdt_magic(addr: u64) -> bool {
    if addr == 0 || !addr.is_multiple_of(4) {
        return false;
    }
    // SAFETY: the caller guarantees the word is readable and aligned.
    let word = unsafe { (addr as *const u32).read_volatile() };
    u32::from_be(word) == FDT_MAGIC
}

/// Locates and parses the device tree.
///
/// # Safety
/// `x0` must be the value of x0 at kernel entry, RAM at [`VIRT_RAM_BASE`]
/// must be mapped, and the blob must stay untouched for the kernel's life
/// (its range is kept out of the heap).
pub unsafe fn parse(x0: u64) -> Result<MachineInfo, DtbError> {
    // SAFETY: x0 is either 0 (rejected) or what a loader passed as the
    // blob's address, which must then be readable; the start of RAM is
    // always mapped.
    let addr = if unsafe { has_fdt_magic(x0) } {
        x0
    } else if unsafe { has_fdt_magic(VIRT_RAM_BASE) } {
        VIRT_RAM_BASE
    } else {
        return Err(DtbError::NotFound);
    };
    // SAFETY: a valid header is at `addr` (checked above) and the blob is
    // never written, so a 'static borrow of it is sound.
    let fdt: Fdt<'static> =
        unsafe { Fdt::from_ptr(addr as *const u8) }.map_err(DtbError::Invalid)?;
    read(&fdt, addr)
}

fn read(fdt: &Fdt<'static>, addr: u64) -> Result<MachineInfo, DtbError> {
    let mut info = MachineInfo {
        blob: Range::from_base_size(addr, fdt.total_size() as u64),
        memory: RangeList::new(),
        reserved: RangeList::new(),
        cpus: [0; MAX_CPUS],
        cpu_count: 0,
        cpus_in_tree: 0,
        psci: None,
        gic: Err("none"),
        uart: None,
        vtimer_irq: DEFAULT_VTIMER_PPI,
        bootargs: "",
    };

    for node in fdt.all_nodes() {
        let is_memory = node
            .property("device_type")
            .and_then(|p| p.as_str())
            .is_some_and(|t| t == "memory");
        if !is_memory {
            continue;
        }
        for region in node.reg().into_iter().flatten() {
            let size = region.size.unwrap_or(0) as u64;
            info.memory
                .add(Range::from_base_size(region.starting_address as u64, size))?;
        }
    }

    for entry in fdt.memory_reservations() {
        info.reserved.add(Range::from_base_size(
            entry.address() as u64,
            entry.size() as u64,
        ))?;
    }
    if let Some(reserved) = fdt.find_node("/reserved-memory") {
        for child in reserved.children() {
            for region in child.reg().into_iter().flatten() {
                let size = region.size.unwrap_or(0) as u64;
                info.reserved
                    .add(Range::from_base_size(region.starting_address as u64, size))?;
            }
        }
    }

    if let Some(cpus) = fdt.find_node("/cpus") {
        for cpu in cpus
            .children()
            .filter(|c| c.name.split('@').next() == Some("cpu"))
        {
            let mpidr = cpu
                .reg()
                .and_then(|mut r| r.next())
                .ok_or(DtbError::BadCpuNode)?;
            if info.cpu_count < MAX_CPUS {
                info.cpus[info.cpu_count] = mpidr.starting_address as u64;
                info.cpu_count += 1;
            }
            info.cpus_in_tree += 1;
        }
    }

    info.psci = fdt
        .find_node("/psci")
        .and_then(|n| n.property("method"))
        .and_then(|p| p.as_str())
        .and_then(|m| match m {
            "hvc" => Some(Conduit::Hvc),
            "smc" => Some(Conduit::Smc),
            _ => None,
        });

    if let Some(gic) = fdt.find_compatible(&["arm,cortex-a15-gic", "arm,gic-400"]) {
        let mut reg = gic.reg().into_iter().flatten();
        if let (Some(d), Some(c)) = (reg.next(), reg.next()) {
            info.gic = Ok(GicV2 {
                distributor: d.starting_address as usize,
                cpu_interface: c.starting_address as usize,
            });
        }
    } else if let Some(other) = fdt.find_node("/intc").and_then(|n| n.compatible()) {
        info.gic = Err(other.first());
    }

    info.uart = fdt
        .find_compatible(&["arm,pl011"])
        .and_then(|n| n.reg())
        .and_then(|mut r| r.next())
        .map(|r| r.starting_address as usize);

    // `interrupts = <type num flags>` × 4: secure physical, non-secure
    // physical, virtual, hypervisor. The third is the EL1 virtual timer.
    if let Some(prop) = fdt
        .find_compatible(&["arm,armv8-timer", "arm,armv7-timer"])
        .and_then(|n| n.property("interrupts"))
    {
        let cell = |i: usize| {
            prop.value
                .get(i * 4..i * 4 + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        // Type 1 is a PPI.
        if let (Some(1), Some(num)) = (cell(6), cell(7)) {
            info.vtimer_irq = PPI_BASE + num;
        }
    }

    info.bootargs = fdt
        .find_node("/chosen")
        .and_then(|n| n.property("bootargs"))
        .and_then(|p| p.as_str())
        .unwrap_or("");

    Ok(info)
}
