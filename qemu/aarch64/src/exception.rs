//! Exception handlers called from the vectors in `boot.rs`.
//!
//! IRQs go to the GIC dispatcher. Anything else means the kernel is broken:
//! the handler prints which vector fired with ESR, ELR, FAR and SPSR and
//! exits QEMU with [`EXIT_FAULT`], so a fault is a failed run, never a hang.

use crate::{console, gic, semihosting};

/// Exit status of a run that took an unexpected exception.
pub const EXIT_FAULT: u32 = 3;

const VECTOR_NAMES: [&str; 16] = [
    "synchronous, current EL, SP_EL0",
    "IRQ, current EL, SP_EL0",
    "FIQ, current EL, SP_EL0",
    "SError, current EL, SP_EL0",
    "synchronous, current EL, SP_ELx",
    "IRQ, current EL, SP_ELx",
    "FIQ, current EL, SP_ELx",
    "SError, current EL, SP_ELx",
    "synchronous, lower EL, AArch64",
    "IRQ, lower EL, AArch64",
    "FIQ, lower EL, AArch64",
    "SError, lower EL, AArch64",
    "synchronous, lower EL, AArch32",
    "IRQ, lower EL, AArch32",
    "FIQ, lower EL, AArch32",
    "SError, lower EL, AArch32",
];

/// Human-readable name of an `ESR_EL1` exception class.
fn exception_class(esr: u64) -> &'static str {
    match (esr >> 26) & 0x3f {
        0x00 => "unknown reason",
        0x01 => "WFI/WFE trapped",
        0x07 => "FP/SIMD access trapped",
        0x0e => "illegal execution state",
        0x15 => "SVC",
        0x16 => "HVC",
        0x17 => "SMC",
        0x18 => "system register access trapped",
        0x20 | 0x21 => "instruction abort",
        0x22 => "PC alignment fault",
        0x24 | 0x25 => "data abort",
        0x26 => "SP alignment fault",
        0x2f => "SError",
        0x3c => "BRK instruction",
        _ => "other",
    }
}

/// Reports an unexpected exception and ends the run. Called from the vectors
/// with the vector number and the exception syndrome registers.
pub extern "C" fn fatal_exception(vector: u64, esr: u64, elr: u64, far: u64, spsr: u64) -> ! {
    let name = VECTOR_NAMES.get(vector as usize).copied().unwrap_or("?");
    console::print_emergency(format_args!(
        "\n!!! FATAL EXCEPTION on CPU {}: {}\n    {} (ESR_EL1 EC {:#04x})\n    ESR_EL1 = {:#018x}\n    ELR_EL1 = {:#018x}\n    FAR_EL1 = {:#018x}\n    SPSR_EL1 = {:#018x}\n",
        crate::cpu::cpu_index(),
        name,
        exception_class(esr),
        (esr >> 26) & 0x3f,
        esr,
        elr,
        far,
        spsr,
    ));
    semihosting::exit(EXIT_FAULT)
}

/// IRQ entry from the vectors; `elr` is the interrupted instruction.
pub extern "C" fn handle_irq(elr: u64) {
    gic::dispatch(elr);
}
