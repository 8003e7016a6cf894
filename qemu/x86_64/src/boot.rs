//! The boot path, from QEMU's PVH entry to Rust, for the bootstrap CPU and
//! for every application processor.
//!
//! # Bootstrap CPU
//! 1. QEMU (`-kernel kernel.elf`) loads the ELF's segments at their
//!    physical addresses (the image is linked at 1 MiB) and, finding the
//!    PVH note below (Xen note type 18, `XEN_ELFNOTE_PHYS32_ENTRY`), jumps
//!    to [`pvh_start32`] in 32-bit protected mode with paging off, flat
//!    segments and EBX = physical address of `hvm_start_info`.
//! 2. `pvh_start32` builds the boot page tables in [`BOOT_TABLES`]: an
//!    identity map of the first 4 GiB with 2 MiB pages (RAM below the PCI
//!    hole and the local APIC), enables PAE, loads CR3, sets EFER.LME,
//!    loads the 64-bit GDT and turns paging on, then far-jumps into 64-bit
//!    code.
//! 3. The 64-bit code loads the data segments, switches to CPU 0's stack
//!    in [`CPU_STACKS`] and calls `kernel_bsp_entry(start_info)`, which the
//!    kernel binary defines with [`crate::entry_point!`]. From there
//!    [`crate::start_bsp`] continues in Rust (memory above 4 GiB is mapped
//!    by `paging::map_above_4g` once the memory map is known).
//!
//! # Application processors
//! `smp` copies the 16-bit trampoline (`ap_trampoline_start` ..
//! `ap_trampoline_end`, written to run at [`TRAMPOLINE_BASE`]) below
//! 1 MiB and sends INIT-SIPI-SIPI. Each AP starts there in real mode,
//! loads the trampoline's own GDT, enters 32-bit protected mode, runs the
//! same long-mode switch as the bootstrap CPU (same page tables, same GDT),
//! and jumps to `ap_long_mode` in the kernel image. There it claims the
//! next dense CPU index with an atomic add on [`AP_NEXT_INDEX`], takes the
//! stack of that index and calls `kernel_ap_entry(index)`. APs beyond
//! [`MAX_CPUS`] halt.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU32;

use crate::percpu::MAX_CPUS;

/// Bytes of stack per CPU.
pub const STACK_SIZE: usize = 128 * 1024;

/// Physical address where the AP trampoline runs: page 8, below 1 MiB as
/// SIPI requires (the SIPI vector is the page number).
pub const TRAMPOLINE_BASE: u64 = 0x8000;

/// Page directories in the boot tables: 4 map the first 4 GiB at boot,
/// the rest can map RAM above 4 GiB, up to 64 GiB in all.
pub const PAGE_DIRECTORIES: usize = 64;

/// One page-table page.
#[repr(C, align(4096))]
pub struct PageTable(pub [u64; 512]);

/// The boot page tables: one PML4, one PDPT and the page directories of
/// the identity map, contiguous (the assembly relies on the layout).
#[repr(C, align(4096))]
pub struct BootTables {
    pub pml4: PageTable,
    pub pdpt: PageTable,
    pub pd: [PageTable; PAGE_DIRECTORIES],
}

/// The boot page tables, shared by all CPUs.
pub struct SharedTables(pub UnsafeCell<BootTables>);

// SAFETY: the tables are written by the boot assembly before any other CPU
// runs and by `paging::map_above_4g` on the bootstrap CPU before the APs
// start; afterwards they are only read (by the MMU).
unsafe impl Sync for SharedTables {}

/// The boot page tables (in .bss; the assembly fills them).
pub static BOOT_TABLES: SharedTables = SharedTables(UnsafeCell::new(BootTables {
    pml4: PageTable([0; 512]),
    pdpt: PageTable([0; 512]),
    pd: [const { PageTable([0; 512]) }; PAGE_DIRECTORIES],
}));

/// Every CPU's stack, indexed by dense CPU index.
#[repr(C, align(4096))]
pub struct Stacks(pub UnsafeCell<[[u8; STACK_SIZE]; MAX_CPUS]>);

// SAFETY: each CPU uses only the stack of its own index (the assembly picks
// it); other code only reads and writes the guard words at the bottom of a
// stack, which the owner never reaches unless it overflows.
unsafe impl Sync for Stacks {}

/// The stacks, in .bss.
pub static CPU_STACKS: Stacks = Stacks(UnsafeCell::new([[0; STACK_SIZE]; MAX_CPUS]));

/// The next dense CPU index to hand to an AP (the bootstrap CPU is 0).
pub static AP_NEXT_INDEX: AtomicU32 = AtomicU32::new(1);

extern "C" {
    /// Start of the AP trampoline's code and data (copied, never run here).
    pub static ap_trampoline_start: u8;
    /// End of the AP trampoline.
    pub static ap_trampoline_end: u8;
}

global_asm!(
    r#"
    /* PVH entry note: QEMU boots the image at this 32-bit address. */
    .pushsection .note.pvh, "a", @note
    .balign 4
    .long 4                     /* name size: "Xen\0" */
    .long 8                     /* descriptor size */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4
    .popsection

    /* Enables PAE, loads CR3 and the 64-bit GDT, sets EFER.LME and turns
       paging on. After it, a far jump to selector 0x08 enters 64-bit mode. */
    .macro ENTER_LONG_MODE
    mov %cr4, %eax
    or $0x20, %eax              /* CR4.PAE */
    mov %eax, %cr4
    mov ${tables}, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx       /* IA32_EFER */
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    lgdt boot_gdt_ptr
    mov %cr0, %eax
    or $0x80000001, %eax        /* PG | PE */
    mov %eax, %cr0
    .endm

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi              /* hvm_start_info, kept for Rust */

    /* Zero the PML4 and the PDPT; the four boot PDs are written whole. */
    mov ${tables}, %edi
    xor %eax, %eax
    mov $2048, %ecx
    rep stosl

    mov ${tables}, %edi
    lea 0x1003(%edi), %eax      /* PML4[0] -> PDPT, present | writable */
    mov %eax, (%edi)

    lea 0x2003(%edi), %eax      /* PDPT[0..4] -> PD[0..4] */
    lea 0x1000(%edi), %ebx
    mov $4, %ecx
2:  mov %eax, (%ebx)
    movl $0, 4(%ebx)
    add $0x1000, %eax
    add $8, %ebx
    loop 2b

    lea 0x2000(%edi), %ebx      /* PD entries: 2048 x 2 MiB = 4 GiB */
    mov $0x83, %eax             /* present | writable | 2 MiB page */
    mov $2048, %ecx
3:  mov %eax, (%ebx)
    movl $0, 4(%ebx)
    add $0x200000, %eax
    add $8, %ebx
    loop 3b

    ENTER_LONG_MODE
    ljmp $0x08, $bsp_long_mode

    .code64
bsp_long_mode:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov %esi, %edi              /* zero-extends: rdi = hvm_start_info */
    mov ${stacks} + {stack_size}, %rsp
    xor %ebp, %ebp
    call kernel_bsp_entry
4:  cli
    hlt
    jmp 4b

ap_long_mode:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov $1, %eax
    lock xadd %eax, {next_index}(%rip)
    cmp ${max_cpus}, %eax
    jae 5f
    mov %eax, %edi              /* rdi = dense index */
    lea 1(%rdi), %rax
    imul ${stack_size}, %rax, %rax
    lea {stacks}(%rip), %rsp
    add %rax, %rsp              /* top of this CPU's stack */
    xor %ebp, %ebp
    call kernel_ap_entry
5:  cli
    hlt
    jmp 5b
    .popsection

    /* The 64-bit GDT: 0x08 code, 0x10 data. Written by the CPU (accessed
       bits), so it lives in .data. */
    .pushsection .data.boot_gdt, "aw"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
    .global boot_gdt_ptr
boot_gdt_ptr:
    .word boot_gdt_ptr - boot_gdt - 1
    .quad boot_gdt
    .popsection

    /* The AP trampoline, copied to {trampoline} before use: every address
       inside it is computed for that location. */
    .pushsection .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
    .global ap_trampoline_end
    .code16
ap_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl {trampoline} + (tr_gdt_ptr - ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax                 /* PE */
    mov %eax, %cr0
    ljmpl $0x08, ${trampoline} + (tr_protected - ap_trampoline_start)

    .code32
tr_protected:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    ENTER_LONG_MODE
    ljmp $0x08, $ap_long_mode

    .balign 8
tr_gdt:                         /* 0x08: 32-bit code, 0x10: data */
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
tr_gdt_ptr:
    .word tr_gdt_ptr - tr_gdt - 1
    .long {trampoline} + (tr_gdt - ap_trampoline_start)
ap_trampoline_end:
    .code64
    .popsection
    "#,
    tables = sym BOOT_TABLES,
    stacks = sym CPU_STACKS,
    next_index = sym AP_NEXT_INDEX,
    stack_size = const STACK_SIZE,
    max_cpus = const MAX_CPUS,
    trampoline = const TRAMPOLINE_BASE,
    options(att_syntax)
);
