//! The strata benchmark suite.
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml -- [--quick] [--only ID,...] [--allocators KEY,...]
//! ```
//!
//! Runs every workload on every allocator and writes `results/RESULTS.md`
//! and `results/summary.svg` (`RESULTS-quick.md` / `summary-quick.svg` with
//! `--quick`, so a quick run never replaces full results). `--only` keeps
//! the workloads whose id contains one of the given strings; `--allocators`
//! keeps the allocators with the given keys (`--list` prints both).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cputime;
mod harness;
mod machine;
mod report;
mod spsc;
mod watchdog;
mod workloads;

use std::path::PathBuf;
use std::time::Instant;

use harness::Cfg;

fn usage() -> ! {
    eprintln!(
        "usage: strata-bench [--quick] [--only ID[,ID...]] [--allocators KEY[,KEY...]] [--list]"
    );
    std::process::exit(64);
}

fn main() {
    let mut quick = false;
    let mut only: Vec<String> = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut list = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => {
                only = args
                    .next()
                    .unwrap_or_else(|| usage())
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            "--allocators" => {
                keys = args
                    .next()
                    .unwrap_or_else(|| usage())
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            "--list" => list = true,
            _ => usage(),
        }
    }
    // The suite runs on a thread with a large stack: some allocator
    // instances are big structs built with `Box::new`.
    let t = std::thread::Builder::new()
        .name("bench".into())
        .stack_size(256 << 20)
        .spawn(move || {
            strata_bench::contenders::host_cpu::id();
            suite(quick, &only, &keys, list)
        })
        .expect("spawn bench thread");
    if t.join().is_err() {
        std::process::exit(101);
    }
}

fn suite(quick: bool, only: &[String], keys: &[String], list: bool) {
    let cfg = Cfg::new(quick);
    let mut ws = harness::workloads(&cfg);
    let mut es = harness::entries();
    if list {
        println!(
            "workloads: {}",
            ws.iter()
                .map(|w| w.id.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "allocators: {}",
            es.iter().map(|e| e.key).collect::<Vec<_>>().join(" ")
        );
        return;
    }
    let filtered = !only.is_empty() || !keys.is_empty();
    if !only.is_empty() {
        ws.retain(|w| only.iter().any(|o| w.id.contains(o.as_str())));
    }
    if !keys.is_empty() {
        es.retain(|e| keys.iter().any(|k| k == e.key));
    }
    if ws.is_empty() || es.is_empty() {
        eprintln!("nothing to run (see --list)");
        std::process::exit(64);
    }
    let mut machine = machine::describe();
    let load_start = machine::loadavg();
    eprintln!(
        "strata-bench: {} mode, {} workloads × {} allocators, {} repetitions, region {} MiB",
        if quick { "quick" } else { "full" },
        ws.len(),
        es.len(),
        cfg.reps,
        cfg.region_len >> 20
    );
    let t0 = Instant::now();
    let overhead = workloads::loop_overhead(if quick { 100_000 } else { 2_000_000 });
    let scaling = machine::compute_scaling();
    let cells = harness::run_all(&cfg, &ws, &es);
    let secs = t0.elapsed().as_secs_f64();
    machine.push((
        "Load average (1/5/15 min)",
        format!(
            "{load_start} at the start, {} at the end (other work on the machine skews timings)",
            machine::loadavg()
        ),
    ));
    let cpu = machine.first().map(|(_, v)| v.clone()).unwrap_or_default();
    let info = report::RunInfo {
        machine,
        secs,
        overhead,
        scaling,
    };
    let md = report::markdown(&cfg, &ws, &es, &cells, &info);
    println!("{md}");
    let svg = report::svg(&cfg, &ws, &es, &cells, &cpu);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    let suffix = match (quick, filtered) {
        (_, true) => "-partial",
        (true, false) => "-quick",
        (false, false) => "",
    };
    std::fs::create_dir_all(&dir).expect("create results directory");
    let md_path = dir.join(format!("RESULTS{suffix}.md"));
    let svg_path = dir.join(format!("summary{suffix}.svg"));
    std::fs::write(&md_path, md).expect("write RESULTS.md");
    std::fs::write(&svg_path, svg).expect("write summary.svg");
    eprintln!(
        "wrote {} and {} ({secs:.0} s); all checks passed",
        md_path.display(),
        svg_path.display()
    );
}
