//! Entry points, exception vectors and the assembly every CPU runs before
//! Rust code.
//!
//! Boot CPU (`_start`, the ELF entry that QEMU jumps to):
//! 1. keep x0 (a device tree pointer when a loader passes one; QEMU passes 0
//!    for ELF images and leaves the blob at the start of RAM instead);
//! 2. drop from EL2 to EL1 if started at EL2 (`-M virt,virtualization=on`);
//! 3. enable FP/SIMD (`CPACR_EL1.FPEN`): compiled Rust uses the vector
//!    registers and traps without it;
//! 4. enable the MMU with the identity map of `mmu.rs`;
//! 5. zero `.bss`, switch to the boot stack, clear `TPIDR_EL1` (CPU index 0
//!    until the device tree says otherwise), install the vectors;
//! 6. call [`crate::kernel::boot_main`] with the saved x0 and the exception
//!    level the CPU entered at.
//!
//! Other CPUs (`__kernel_secondary_entry`, the entry handed to PSCI
//! `CPU_ON`): the same steps 2–4, then the stack top and dense CPU index are
//! read from the [`BootSlot`] whose address PSCI passes in x0, the index goes
//! to `TPIDR_EL1`, and [`crate::kernel::secondary_main`] runs.
//!
//! Vectors: an IRQ taken at EL1 saves every caller-saved general and FP/SIMD
//! register, `ELR_EL1`/`SPSR_EL1` and `FPCR`/`FPSR`, then calls
//! [`crate::exception::handle_irq`]. Every other exception (synchronous
//! faults, FIQ, SError, anything from a lower EL or taken on SP_EL0) is fatal:
//! [`crate::exception::fatal_exception`] prints ESR, ELR and FAR and exits
//! QEMU with a failure status.

use core::arch::global_asm;
use core::sync::atomic::AtomicU64;

use crate::{exception, kernel, mmu};

/// What a secondary CPU needs before it can run Rust code; PSCI `CPU_ON`
/// passes its address as the context argument (x0 on the new CPU).
#[repr(C)]
pub struct BootSlot {
    /// Initial stack pointer (16-byte aligned top of the CPU's stack).
    pub stack_top: AtomicU64,
    /// Dense CPU index for `TPIDR_EL1`.
    pub index: AtomicU64,
}

/// `CPACR_EL1.FPEN` = 0b11: FP/SIMD instructions do not trap at EL1/EL0.
const CPACR_FPEN: u64 = 3 << 20;
/// `HCR_EL2.RW`: EL1 is AArch64.
const HCR_EL2_RW: u64 = 1 << 31;
/// `CNTHCTL_EL2.EL1PCTEN | EL1PCEN`: EL1 may use the physical counter/timer.
const CNTHCTL_EL2_EL1_ACCESS: u64 = 0b11;
/// `CPTR_EL2` with its RES1 bits and nothing trapped (TFP = 0).
const CPTR_EL2_NO_TRAPS: u64 = 0x33ff;
/// `SCTLR_EL1` reset value: RES1 bits only, MMU and caches off.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// `SPSR_EL2` for the return to EL1: EL1h with D, A, I and F masked.
const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// Size of the IRQ frame on the stack (see the layout in the assembly).
const IRQ_FRAME_SIZE: usize = 720;

global_asm!(
    r#"
.macro LOAD_IMM64 reg, value
    movz \reg, #((\value) & 0xffff)
    movk \reg, #(((\value) >> 16) & 0xffff), lsl #16
    movk \reg, #(((\value) >> 32) & 0xffff), lsl #32
    movk \reg, #(((\value) >> 48) & 0xffff), lsl #48
.endm

// Leaves EL2 for EL1 when entered at EL2; clobbers x0.
.macro DROP_TO_EL1
    mrs x0, CurrentEL
    cmp x0, #(2 << 2)
    b.ne 90f
    LOAD_IMM64 x0, {hcr_rw}
    msr hcr_el2, x0
    LOAD_IMM64 x0, {cnthctl}
    msr cnthctl_el2, x0
    msr cntvoff_el2, xzr
    LOAD_IMM64 x0, {cptr}
    msr cptr_el2, x0
    LOAD_IMM64 x0, {sctlr_reset}
    msr sctlr_el1, x0
    LOAD_IMM64 x0, {spsr_el1h}
    msr spsr_el2, x0
    adr x0, 90f
    msr elr_el2, x0
    eret
90:
.endm

// Enables FP/SIMD at EL1; clobbers x0.
.macro ENABLE_FP
    LOAD_IMM64 x0, {cpacr_fpen}
    msr cpacr_el1, x0
    isb
.endm

.section .text.boot, "ax"
.global _start
_start:
    mov x19, x0
    mrs x20, CurrentEL
    DROP_TO_EL1
    ENABLE_FP
    bl __kernel_enable_mmu

    adrp x0, __bss_start
    add x0, x0, :lo12:__bss_start
    adrp x1, __bss_end
    add x1, x1, :lo12:__bss_end
1:  cmp x0, x1
    b.hs 2f
    stp xzr, xzr, [x0], #16
    b 1b
2:
    adrp x0, __boot_stack_top
    add x0, x0, :lo12:__boot_stack_top
    mov sp, x0
    msr tpidr_el1, xzr
    adrp x0, __kernel_vectors
    add x0, x0, :lo12:__kernel_vectors
    msr vbar_el1, x0
    isb
    mov x0, x19
    lsr x1, x20, #2
    bl {boot_main}
3:  wfe
    b 3b

.global __kernel_secondary_entry
__kernel_secondary_entry:
    mov x19, x0
    DROP_TO_EL1
    ENABLE_FP
    bl __kernel_enable_mmu
    ldr x0, [x19]
    mov sp, x0
    ldr x0, [x19, #8]
    msr tpidr_el1, x0
    adrp x1, __kernel_vectors
    add x1, x1, :lo12:__kernel_vectors
    msr vbar_el1, x1
    isb
    bl {secondary_main}
4:  wfe
    b 4b

// Turns on the MMU with the identity map; uses x0 only, no stack.
__kernel_enable_mmu:
    LOAD_IMM64 x0, {mair}
    msr mair_el1, x0
    LOAD_IMM64 x0, {tcr}
    msr tcr_el1, x0
    adrp x0, {table}
    add x0, x0, :lo12:{table}
    msr ttbr0_el1, x0
    msr ttbr1_el1, xzr
    isb
    tlbi vmalle1
    dsb nsh
    isb
    mrs x0, sctlr_el1
    orr x0, x0, #(1 << 0)
    orr x0, x0, #(1 << 2)
    orr x0, x0, #(1 << 12)
    bic x0, x0, #(1 << 1)
    msr sctlr_el1, x0
    isb
    ret

// Fatal exceptions: x0 = vector number, then ESR, ELR, FAR, SPSR.
.macro FATAL_VECTOR n
    .balign 0x80
    mov x0, #\n
    b __kernel_fatal
.endm

.section .text.vectors, "ax"
.balign 2048
.global __kernel_vectors
__kernel_vectors:
    FATAL_VECTOR 0
    FATAL_VECTOR 1
    FATAL_VECTOR 2
    FATAL_VECTOR 3
    FATAL_VECTOR 4
    .balign 0x80
    sub sp, sp, #{frame}
    stp x0, x1, [sp, #0]
    b __kernel_irq
    FATAL_VECTOR 6
    FATAL_VECTOR 7
    FATAL_VECTOR 8
    FATAL_VECTOR 9
    FATAL_VECTOR 10
    FATAL_VECTOR 11
    FATAL_VECTOR 12
    FATAL_VECTOR 13
    FATAL_VECTOR 14
    FATAL_VECTOR 15

__kernel_fatal:
    mrs x1, esr_el1
    mrs x2, elr_el1
    mrs x3, far_el1
    mrs x4, spsr_el1
    bl {fatal}
5:  wfe
    b 5b

// IRQ frame: x0-x18 and x29 at 0, x30 at 160, FPCR at 168, ELR/SPSR at
// 176, FPSR at 192, q0-q31 at 208; 720 bytes in all.
__kernel_irq:
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x29, [sp, #144]
    mrs x0, fpcr
    stp x30, x0, [sp, #160]
    mrs x0, elr_el1
    mrs x1, spsr_el1
    stp x0, x1, [sp, #176]
    mrs x0, fpsr
    str x0, [sp, #192]
    stp q0, q1, [sp, #208]
    stp q2, q3, [sp, #240]
    stp q4, q5, [sp, #272]
    stp q6, q7, [sp, #304]
    stp q8, q9, [sp, #336]
    stp q10, q11, [sp, #368]
    stp q12, q13, [sp, #400]
    stp q14, q15, [sp, #432]
    stp q16, q17, [sp, #464]
    stp q18, q19, [sp, #496]
    stp q20, q21, [sp, #528]
    stp q22, q23, [sp, #560]
    stp q24, q25, [sp, #592]
    stp q26, q27, [sp, #624]
    stp q28, q29, [sp, #656]
    stp q30, q31, [sp, #688]

    ldr x0, [sp, #176]
    bl {irq}

    ldp q0, q1, [sp, #208]
    ldp q2, q3, [sp, #240]
    ldp q4, q5, [sp, #272]
    ldp q6, q7, [sp, #304]
    ldp q8, q9, [sp, #336]
    ldp q10, q11, [sp, #368]
    ldp q12, q13, [sp, #400]
    ldp q14, q15, [sp, #432]
    ldp q16, q17, [sp, #464]
    ldp q18, q19, [sp, #496]
    ldp q20, q21, [sp, #528]
    ldp q22, q23, [sp, #560]
    ldp q24, q25, [sp, #592]
    ldp q26, q27, [sp, #624]
    ldp q28, q29, [sp, #656]
    ldp q30, q31, [sp, #688]
    ldr x0, [sp, #192]
    msr fpsr, x0
    ldp x0, x1, [sp, #176]
    msr elr_el1, x0
    msr spsr_el1, x1
    ldp x30, x0, [sp, #160]
    msr fpcr, x0
    ldp x18, x29, [sp, #144]
    ldp x16, x17, [sp, #128]
    ldp x14, x15, [sp, #112]
    ldp x12, x13, [sp, #96]
    ldp x10, x11, [sp, #80]
    ldp x8, x9, [sp, #64]
    ldp x6, x7, [sp, #48]
    ldp x4, x5, [sp, #32]
    ldp x2, x3, [sp, #16]
    ldp x0, x1, [sp, #0]
    add sp, sp, #{frame}
    eret
"#,
    hcr_rw = const HCR_EL2_RW,
    cnthctl = const CNTHCTL_EL2_EL1_ACCESS,
    cptr = const CPTR_EL2_NO_TRAPS,
    sctlr_reset = const SCTLR_EL1_RESET,
    spsr_el1h = const SPSR_EL1H_MASKED,
    cpacr_fpen = const CPACR_FPEN,
    mair = const mmu::MAIR,
    tcr = const mmu::TCR,
    table = sym mmu::IDENTITY_MAP,
    frame = const IRQ_FRAME_SIZE,
    boot_main = sym kernel::boot_main,
    secondary_main = sym kernel::secondary_main,
    fatal = sym exception::fatal_exception,
    irq = sym exception::handle_irq,
);

unsafe extern "C" {
    /// Entry point for CPUs started by PSCI `CPU_ON` (defined above).
    pub safe fn __kernel_secondary_entry();
    /// Lowest address of the kernel image (linker script).
    static __kernel_start: u8;
    /// One past the highest address of the kernel image, stacks included.
    static __kernel_end: u8;
    /// Bottom of the boot CPU's stack (linker script).
    static __boot_stack_bottom: u8;
    /// Top of the boot CPU's stack (linker script).
    static __boot_stack_top: u8;
}

/// Lowest address and size of the boot CPU's stack.
pub fn boot_stack() -> (usize, usize) {
    let bottom = core::ptr::addr_of!(__boot_stack_bottom) as usize;
    let top = core::ptr::addr_of!(__boot_stack_top) as usize;
    (bottom, top - bottom)
}

/// Physical address range `[start, end)` occupied by the kernel image,
/// including `.bss`, every stack and the page table.
pub fn kernel_image() -> (u64, u64) {
    (
        core::ptr::addr_of!(__kernel_start) as u64,
        core::ptr::addr_of!(__kernel_end) as u64,
    )
}

/// Physical address of the secondary CPUs' entry point.
pub fn secondary_entry() -> u64 {
    __kernel_secondary_entry as *const () as u64
}
