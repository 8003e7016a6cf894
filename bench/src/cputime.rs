//! CPU time of the calling thread.
//!
//! Single-threaded workloads are timed with it rather than with the wall
//! clock: on a machine shared with other work, the time a benchmark thread
//! spends descheduled is not the allocator's cost. It includes the time
//! the kernel spends on the thread's behalf (page faults, `mmap`).

use std::time::Duration;

/// A point in the calling thread's CPU time.
#[derive(Clone, Copy, Debug)]
pub struct CpuInstant(Duration);

impl CpuInstant {
    /// Now.
    pub fn now() -> Self {
        CpuInstant(thread_cpu_time())
    }

    /// CPU time of this thread since `self`.
    pub fn elapsed(self) -> Duration {
        thread_cpu_time().saturating_sub(self.0)
    }
}

#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `struct timespec` (64-bit Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Duration {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_work_not_sleep() {
        let t = CpuInstant::now();
        std::thread::sleep(Duration::from_millis(50));
        let slept = t.elapsed();
        let mut x = 0u64;
        let t = CpuInstant::now();
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let worked = t.elapsed();
        assert!(slept < Duration::from_millis(20), "{slept:?}");
        assert!(worked > Duration::ZERO && x > 0);
    }
}
