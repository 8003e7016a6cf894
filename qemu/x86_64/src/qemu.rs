//! QEMU's own devices: `isa-debug-exit` to end a run with a status, and
//! `fw_cfg` to learn how many CPUs the machine has.
//!
//! The runner starts QEMU with
//! `-device isa-debug-exit,iobase=0xf4,iosize=0x04`; writing `v` to port
//! 0xf4 makes QEMU exit with status `(v << 1) | 1`. A triple fault (with
//! `-no-reboot`) exits with 0, so 0 cannot mean success: the runner maps
//! [`SUCCESS_STATUS`] to 0 and everything else to failure.

use crate::cpu;

/// Port of `isa-debug-exit`.
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Value written for success: QEMU exits with (0x10 << 1) | 1 = 33.
const EXIT_SUCCESS: u32 = 0x10;
/// Value written for failure: QEMU exits with 3.
const EXIT_FAILURE: u32 = 0x01;
/// The QEMU exit status that means success (the runner maps it to 0).
pub const SUCCESS_STATUS: i32 = 33;

/// `fw_cfg` selector and data ports.
const FW_CFG_SELECTOR: u16 = 0x510;
const FW_CFG_DATA: u16 = 0x511;
/// `fw_cfg` keys: the "QEMU" signature and the number of boot CPUs.
const FW_CFG_SIGNATURE: u16 = 0x00;
const FW_CFG_NB_CPUS: u16 = 0x05;

/// Ends the run: QEMU exits with success ([`SUCCESS_STATUS`]) or failure.
pub fn exit(success: bool) -> ! {
    let value = if success { EXIT_SUCCESS } else { EXIT_FAILURE };
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit device, which the runner
    // always attaches; the write ends the virtual machine.
    unsafe { cpu::outl(DEBUG_EXIT_PORT, value) }
    // Without the device the write does nothing: stop here instead.
    cpu::halt_forever()
}

/// Reads `len` bytes of `fw_cfg` item `key` into the low bytes of a u32.
fn fw_cfg_read(key: u16, len: usize) -> u32 {
    let mut value = 0u32;
    // SAFETY: 0x510/0x511 are QEMU's fw_cfg ports; selecting an item and
    // reading its bytes has no effect beyond the device's read position.
    unsafe {
        cpu::outw(FW_CFG_SELECTOR, key);
        for index in 0..len {
            value |= u32::from(cpu::inb(FW_CFG_DATA)) << (8 * index);
        }
    }
    value
}

/// The number of CPUs QEMU started the machine with (`-smp`), or `None`
/// when `fw_cfg` is absent.
pub fn cpu_count() -> Option<usize> {
    if fw_cfg_read(FW_CFG_SIGNATURE, 4) != u32::from_le_bytes(*b"QEMU") {
        return None;
    }
    Some(fw_cfg_read(FW_CFG_NB_CPUS, 2) as usize)
}
