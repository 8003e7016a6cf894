//! The interrupt descriptor table, shared by all CPUs.
//!
//! - Vectors 0..=31 (CPU exceptions) go to one stub each, which pushes the
//!   vector (and a zero where the CPU pushes no error code) and saves every
//!   general register; [`kernel_exception`] prints the vector, error code,
//!   RIP, CR2 and registers on the console and ends the run with failure.
//!   Any fault is a failed test: none is resumed.
//! - [`apic::TIMER_VECTOR`] is the local APIC timer: its stub saves the
//!   caller-saved registers and calls [`kernel_timer_interrupt`], which runs
//!   the background allocation work and signals end-of-interrupt.
//! - [`apic::SPURIOUS_VECTOR`] returns at once (no EOI, as the APIC
//!   requires).
//! - The legacy 8259 PICs are remapped to vectors 0x20..=0x2F and fully
//!   masked ([`disable_legacy_pic`]): after a PVH boot nothing has
//!   programmed them, and their default base (vector 8) would make the PIT's
//!   IRQ 0 look like a double fault. Those 16 vectors return at once, for
//!   the spurious IRQ 7/15 a masked PIC can still raise.
//! - Every other vector is not present: a stray interrupt raises #NP and
//!   is reported like any fault.
//!
//! All gates are interrupt gates, so handlers run with interrupts masked.
//! The target has no SSE state to save (soft float) and no red zone.

use core::arch::global_asm;
use core::mem::size_of;

use spin::Once;

use crate::{apic, background, cpu, percpu, println, qemu};

/// One IDT entry (64-bit interrupt gate).
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_middle: 0,
        offset_high: 0,
        reserved: 0,
    };

    /// A present DPL-0 interrupt gate to `handler` in the kernel code
    /// segment.
    fn interrupt(handler: u64) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CODE_SELECTOR,
            ist: 0,
            attributes: 0x8E,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

/// The 64-bit code segment of the boot GDT.
const KERNEL_CODE_SELECTOR: u16 = 0x08;

/// The operand of `lidt`.
#[repr(C, packed)]
struct DescriptorTablePointer {
    limit: u16,
    base: u64,
}

static IDT: Once<[Gate; 256]> = Once::new();

extern "C" {
    /// Entry addresses of the 32 exception stubs, in vector order.
    static exception_stub_table: [u64; 32];
    fn timer_interrupt_stub();
    fn spurious_interrupt_stub();
}

/// Builds the IDT (first call) and loads it on the calling CPU.
pub fn load() {
    let idt = IDT.call_once(|| {
        let mut idt = [Gate::MISSING; 256];
        for (vector, gate) in idt.iter_mut().take(32).enumerate() {
            // SAFETY: the table is immutable data defined in the assembly
            // below, with exactly 32 entries.
            *gate = Gate::interrupt(unsafe { exception_stub_table[vector] });
        }
        idt[usize::from(apic::TIMER_VECTOR)] =
            Gate::interrupt(timer_interrupt_stub as *const () as u64);
        for gate in &mut idt[usize::from(PIC_BASE_VECTOR)..usize::from(PIC_BASE_VECTOR) + 16] {
            *gate = Gate::interrupt(spurious_interrupt_stub as *const () as u64);
        }
        idt[usize::from(apic::SPURIOUS_VECTOR)] =
            Gate::interrupt(spurious_interrupt_stub as *const () as u64);
        idt
    });
    let pointer = DescriptorTablePointer {
        limit: (size_of::<[Gate; 256]>() - 1) as u16,
        base: idt.as_ptr() as u64,
    };
    // SAFETY: `pointer` describes a complete, static IDT whose present
    // gates all point at the handlers defined in this module.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags))
    }
}

/// First vector of the remapped legacy PICs.
const PIC_BASE_VECTOR: u8 = 0x20;

/// Remaps both 8259 PICs to [`PIC_BASE_VECTOR`] and masks every line:
/// the kernel uses only the local APIC.
pub fn disable_legacy_pic() {
    const MASTER_COMMAND: u16 = 0x20;
    const MASTER_DATA: u16 = 0x21;
    const SLAVE_COMMAND: u16 = 0xA0;
    const SLAVE_DATA: u16 = 0xA1;
    // SAFETY: the PICs belong to the kernel; this is their standard
    // initialisation sequence (ICW1 edge/cascade/ICW4, ICW2 vector base,
    // ICW3 cascade wiring, ICW4 8086 mode), followed by masking all lines.
    unsafe {
        cpu::outb(MASTER_COMMAND, 0x11);
        cpu::outb(SLAVE_COMMAND, 0x11);
        cpu::outb(MASTER_DATA, PIC_BASE_VECTOR);
        cpu::outb(SLAVE_DATA, PIC_BASE_VECTOR + 8);
        cpu::outb(MASTER_DATA, 0x04);
        cpu::outb(SLAVE_DATA, 0x02);
        cpu::outb(MASTER_DATA, 0x01);
        cpu::outb(SLAVE_DATA, 0x01);
        cpu::outb(MASTER_DATA, 0xFF);
        cpu::outb(SLAVE_DATA, 0xFF);
    }
}

/// The stack of a CPU that took an exception, as the stubs leave it.
#[repr(C)]
pub struct ExceptionFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating point",
    "alignment check",
    "machine check",
    "SIMD floating point",
    "virtualization",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security",
    "reserved",
];

/// Reports a CPU exception and ends the run with failure.
#[no_mangle]
extern "C" fn kernel_exception(frame: &ExceptionFrame) -> ! {
    let name = EXCEPTION_NAMES
        .get(frame.vector as usize)
        .copied()
        .unwrap_or("?");
    println!(
        "EXCEPTION on cpu {}: vector {} ({name}), error code {:#x}\n  rip {:#018x} cs {:#x} rflags {:#x} rsp {:#018x} ss {:#x} cr2 {:#018x}\n  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\n  rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}\n  r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}\n  r13 {:#018x} r14 {:#018x} r15 {:#018x}",
        percpu::index(),
        frame.vector,
        frame.error_code,
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.rsp,
        frame.ss,
        cpu::cr2(),
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11,
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15,
    );
    qemu::exit(false)
}

/// The local APIC timer: background allocation work, then EOI.
#[no_mangle]
extern "C" fn kernel_timer_interrupt() {
    background::on_timer_tick();
    apic::end_of_interrupt();
}

global_asm!(
    r#"
    .macro EXCEPTION_STUB vector, has_error_code
    .balign 16
exception_stub_\vector:
    .if \has_error_code == 0
    pushq $0
    .endif
    pushq $\vector
    jmp exception_common
    .endm

    .pushsection .text.interrupts, "ax"
    EXCEPTION_STUB 0, 0
    EXCEPTION_STUB 1, 0
    EXCEPTION_STUB 2, 0
    EXCEPTION_STUB 3, 0
    EXCEPTION_STUB 4, 0
    EXCEPTION_STUB 5, 0
    EXCEPTION_STUB 6, 0
    EXCEPTION_STUB 7, 0
    EXCEPTION_STUB 8, 1
    EXCEPTION_STUB 9, 0
    EXCEPTION_STUB 10, 1
    EXCEPTION_STUB 11, 1
    EXCEPTION_STUB 12, 1
    EXCEPTION_STUB 13, 1
    EXCEPTION_STUB 14, 1
    EXCEPTION_STUB 15, 0
    EXCEPTION_STUB 16, 0
    EXCEPTION_STUB 17, 1
    EXCEPTION_STUB 18, 0
    EXCEPTION_STUB 19, 0
    EXCEPTION_STUB 20, 0
    EXCEPTION_STUB 21, 1
    EXCEPTION_STUB 22, 0
    EXCEPTION_STUB 23, 0
    EXCEPTION_STUB 24, 0
    EXCEPTION_STUB 25, 0
    EXCEPTION_STUB 26, 0
    EXCEPTION_STUB 27, 0
    EXCEPTION_STUB 28, 0
    EXCEPTION_STUB 29, 1
    EXCEPTION_STUB 30, 1
    EXCEPTION_STUB 31, 0

exception_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    and $-16, %rsp
    cld
    call kernel_exception
    ud2

    /* Nine pushes after the CPU's 40-byte frame (whose start the CPU
       aligns to 16) leave the stack 16-byte aligned for the call. */
    .global timer_interrupt_stub
timer_interrupt_stub:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    cld
    call kernel_timer_interrupt
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq

    .global spurious_interrupt_stub
spurious_interrupt_stub:
    iretq
    .popsection

    .pushsection .rodata.exception_stub_table, "a"
    .balign 8
    .global exception_stub_table
exception_stub_table:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\vector
    .endr
    .popsection
    "#,
    options(att_syntax)
);
