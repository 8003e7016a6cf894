//! Exit QEMU with a status through Arm semihosting (`-semihosting`).
//!
//! `SYS_EXIT_EXTENDED` takes a pointer to a two-word block: the reason
//! `ADP_Stopped_ApplicationExit` and the exit code. QEMU then exits with
//! exactly that code, which is how the runner scripts learn the verdict
//! (PSCI `SYSTEM_OFF` would always exit 0).

use core::arch::asm;

/// Semihosting operation number of `SYS_EXIT_EXTENDED`.
const SYS_EXIT_EXTENDED: u64 = 0x20;
/// `ADP_Stopped_ApplicationExit`: a normal exit carrying a status code.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Ends the QEMU process with `code` as its exit status.
pub fn exit(code: u32) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    // SAFETY: `hlt #0xf000` is the AArch64 semihosting trap. QEMU reads the
    // two-word block that x1 points to (alive on this stack for the call) and
    // ends the process; without `-semihosting` it is an undefined-instruction
    // exception that the vectors report.
    unsafe {
        asm!(
            "hlt #0xf000",
            inout("x0") SYS_EXIT_EXTENDED => _,
            in("x1") block.as_ptr(),
            options(nostack),
        );
    }
    // Only reached if the host ignored the request: park this CPU.
    loop {
        crate::cpu::wait_for_event();
    }
}
