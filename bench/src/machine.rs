//! What the results were measured on.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Facts about the machine and toolchain, as `(label, value)` lines.
pub fn describe() -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    let lscpu = run("lscpu", &[]).unwrap_or_default();
    let field = |name: &str| {
        lscpu.lines().find_map(|l| {
            l.strip_prefix(name)
                .map(|r| r.trim_start_matches(':').trim().to_string())
        })
    };
    let model = field("Model name").unwrap_or_else(|| "unknown".into());
    let cpus = field("CPU(s)").unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(0, |n| n.get())
            .to_string()
    });
    let cores = field("Core(s) per socket");
    let threads = field("Thread(s) per core");
    let sockets = field("Socket(s)");
    let mut cpu = format!("{model}, {cpus} CPUs");
    if let (Some(c), Some(t), Some(s)) = (cores, threads, sockets) {
        cpu += &format!(" ({s} socket × {c} cores × {t} threads)");
    }
    if let Some(h) = field("Hypervisor vendor") {
        cpu += &format!(", virtualised ({h})");
    }
    v.push(("CPU (lscpu)", cpu));
    if let (Some(l1), Some(l2), Some(l3)) =
        (field("L1d cache"), field("L2 cache"), field("L3 cache"))
    {
        v.push(("Caches", format!("L1d {l1}, L2 {l2}, L3 {l3}")));
    }
    let os = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string());
    v.push(("Kernel", os.unwrap_or_else(|_| std::env::consts::OS.into())));
    if let Ok(thp) = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled") {
        v.push(("Transparent huge pages", thp.trim().to_string()));
    }
    v.push((
        "rustc",
        run("rustc", &["-V"]).unwrap_or_else(|| "unknown".into()),
    ));
    if let Some(g) = glibc() {
        v.push(("glibc", g));
    }
    if let Some(c) = run(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    ) {
        v.push(("strata commit", c));
    }
    v.push((
        "Date",
        run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
    ));
    v
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc() -> Option<String> {
    extern "C" {
        fn gnu_get_libc_version() -> *const std::ffi::c_char;
    }
    // SAFETY: glibc returns a pointer to a static NUL-terminated string.
    let s = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
    Some(s.to_string_lossy().into_owned())
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc() -> Option<String> {
    None
}

/// The 1, 5 and 15 minute load averages, as the kernel prints them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Two threads' total throughput over one thread's on a pure compute loop
/// (no memory traffic): what the machine itself allows the two-thread
/// workloads at the time, 2.0 with two idle cores. Median of three trials.
pub fn compute_scaling() -> f64 {
    let mut r: Vec<f64> = (0..3).map(|_| spin_scaling(20_000_000)).collect();
    r.sort_by(f64::total_cmp);
    r[1]
}

/// One trial of [`compute_scaling`] with `iters` iterations per thread
/// (20,000,000 take about 30 ms here).
fn spin_scaling(iters: u64) -> f64 {
    use std::hint::black_box;
    use std::time::Instant;
    let spin = move || {
        let mut x = 1u64;
        for i in 0..iters {
            x = black_box(x.wrapping_mul(0x5851_f42d_4c95_7f2d).wrapping_add(i));
        }
        x
    };
    let t = Instant::now();
    black_box(spin());
    let one = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let h = std::thread::spawn(spin);
    black_box(spin());
    black_box(h.join().expect("spin thread"));
    2.0 * one / t.elapsed().as_secs_f64()
}

/// Scaling a short compute probe must show for a two-thread repetition to
/// count (see [`quiet_probe`]).
pub const QUIET_SCALING: f64 = 1.9;

/// A short (about 10 ms) compute-scaling probe: whether two threads of a
/// pure compute loop ran at least [`QUIET_SCALING`] times as fast as one,
/// i.e. whether the machine gave both cores to this process just now. The
/// two-thread workloads run a probe before and after every repetition.
pub fn quiet_probe() -> bool {
    spin_scaling(3_000_000) >= QUIET_SCALING
}
