//! Workload list, repetitions and per-contender dispatch.

use std::alloc::Layout;
use std::time::{Duration, Instant};

use strata_bench::check::Checker;
use strata_bench::contenders::{Contender, Visit};
use strata_bench::region::Region;
use strata_bench::rng::WyRand;

use crate::watchdog;
use crate::workloads::{self, Env, Kind, BATCH};

/// Run settings.
pub struct Cfg {
    pub quick: bool,
    /// Timed repetitions per (workload, allocator), after one warm-up.
    pub reps: usize,
    /// Bytes of every region handed to a region-based allocator.
    pub region_len: usize,
    /// Budget of one timing repetition.
    pub budget: Duration,
    /// Budget of one space (fill-until-failure) run.
    pub space_budget: Duration,
}

impl Cfg {
    pub fn new(quick: bool) -> Self {
        if quick {
            Cfg {
                quick,
                reps: 2,
                region_len: 64 << 20,
                budget: Duration::from_millis(500),
                space_budget: Duration::from_secs(2),
            }
        } else {
            Cfg {
                quick,
                reps: 5,
                region_len: 256 << 20,
                budget: Duration::from_secs(2),
                space_budget: Duration::from_secs(8),
            }
        }
    }
}

/// The tables of the report, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Pairs,
    Batches,
    Mix,
    TwoThreads,
    ProdCons,
    Large,
    Efficiency,
    Cost,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Pairs,
        Table::Batches,
        Table::Mix,
        Table::TwoThreads,
        Table::ProdCons,
        Table::Large,
        Table::Efficiency,
        Table::Cost,
    ];

    /// Whether the table's workloads run two threads in wall-clock time
    /// (and so have their repetitions gated, see `gated`).
    pub fn two_threads(self) -> bool {
        matches!(self, Table::TwoThreads | Table::ProdCons)
    }

    pub fn title(self) -> &'static str {
        match self {
            Table::Pairs => "Alloc+free pairs of one size (ns per pair, lower is better)",
            Table::Batches => "Batches of 10,000 allocations, then all freed (ns per alloc+free, lower is better)",
            Table::Mix => "Random mix over 10,000 live slots (ns per call, lower is better)",
            Table::TwoThreads => "Random mix on two threads sharing one heap (higher is better)",
            Table::ProdCons => "Producer/consumer: one thread allocates 64 B objects, another frees them (M objects/s, higher is better)",
            Table::Large => "Large alloc+free pairs, 64 KiB..4 MiB (ns per pair, lower is better)",
            Table::Efficiency => "Heap efficiency: live bytes at the first failure / region size (%, higher is better)",
            Table::Cost => "Memory cost per allocation: region bytes / allocations until the first failure (B, lower is better)",
        }
    }

    pub fn note(self) -> &'static str {
        match self {
            Table::Pairs => "Each pair allocates one block (align 8), tags both ends, verifies the tags and frees it.",
            Table::Batches => "10,000 blocks (align 8) are allocated, then freed in reverse allocation order or in a fixed random order; time covers both phases.",
            Table::Mix => "Each call picks a random slot: frees its block if it holds one, else allocates into it. Sizes are log-uniform 8 B..16 KiB; alignments 8 (45 %), 16 (45 %), 32..4096 (10 %, log-uniform). Op streams are precomputed with a fixed seed.",
            Table::TwoThreads => "The same mix on one thread, then on two threads at once (each with its own slots and op stream) on one heap. Ratio = two-thread total throughput / one-thread throughput (2.0 is perfect scaling). Wall-clock time, both phases. A repetition counts only if a 10 ms compute probe before and after it shows both cores free (two compute threads ≥ 1.9× one); otherwise it is run again (at most 4 tries; the last is kept).",
            Table::ProdCons => "Blocks travel through a bounded lock-free SPSC ring (1,024 entries); the consumer checks each tag before freeing. Wall-clock time, repetitions gated by the same compute probe as the two-thread mix.",
            Table::Large => "Sizes log-uniform in 64 KiB..4 MiB, align 8, one block live at a time.",
            Table::Efficiency => "Sizes log-uniform 8 B..16 KiB, align 8. Each time the live bytes first reach 1/8, 2/8, … 7/8 of the region, a random quarter of the live blocks is freed; then the heap is filled until an allocation fails. Region-based allocators only; one run (deterministic).",
            Table::Cost => "A fresh region is filled with one (size, align) until the first failure. Region-based allocators only; one run (deterministic). The region size is the denominator, so allocator metadata counts.",
        }
    }

    /// Digits after the point.
    pub fn decimals(self) -> usize {
        match self {
            Table::TwoThreads => 2,
            _ => 1,
        }
    }
}

/// One measured workload: its table, the column(s) it fills and its inputs.
pub struct Workload {
    /// Stable id (command-line filter, targets, chart).
    pub id: String,
    pub table: Table,
    pub columns: Vec<String>,
    pub kind: Kind,
    /// Fill-until-failure: region-based allocators only, one run.
    pub space: bool,
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// The workload list, with fixed-seed inputs sized for the mode.
pub fn workloads(cfg: &Cfg) -> Vec<Workload> {
    let q = cfg.quick;
    let mut v = Vec::new();
    let one = |id: String, table, column: String, kind, space| Workload {
        id,
        table,
        columns: vec![column],
        kind,
        space,
    };
    for size in [16usize, 64, 256, 1024, 4096, 16384, 65536] {
        let n = if q { 100_000 } else { 2_000_000 };
        v.push(one(
            format!("pair-{size}"),
            Table::Pairs,
            human(size),
            Kind::Pair { size, n },
            false,
        ));
    }
    let mut r = WyRand::new(0x5eed_0001);
    let mut random: Vec<u32> = (0..BATCH as u32).collect();
    r.shuffle(&mut random);
    let reverse: Vec<u32> = (0..BATCH as u32).rev().collect();
    for size in [64usize, 1024] {
        for (name, order) in [("reverse", &reverse), ("random", &random)] {
            v.push(one(
                format!("batch-{size}-{name}"),
                Table::Batches,
                format!("{}, {name} order", human(size)),
                Kind::Batch {
                    size,
                    order: order.clone(),
                    rounds: if q { 3 } else { 30 },
                },
                false,
            ));
        }
    }
    let mix_n = if q { 200_000 } else { 2_000_000 };
    v.push(one(
        "mix".into(),
        Table::Mix,
        "ns per call".into(),
        Kind::Mix {
            ops: workloads::mix_ops(0x5eed_0002, mix_n),
        },
        false,
    ));
    let mix2_n = if q { 100_000 } else { 1_000_000 };
    v.push(Workload {
        id: "mix2".into(),
        table: Table::TwoThreads,
        columns: vec![
            "1 thread (M calls/s)".into(),
            "2 threads (M calls/s)".into(),
            "ratio".into(),
        ],
        kind: Kind::Mix2 {
            ops: [
                workloads::mix_ops(0x5eed_0003, mix2_n),
                workloads::mix_ops(0x5eed_0004, mix2_n),
            ],
        },
        space: false,
    });
    let pc = if q { 200_000 } else { 2_000_000 };
    v.push(one(
        "prodcons".into(),
        Table::ProdCons,
        "M objects/s".into(),
        Kind::ProdCons { n: pc },
        false,
    ));
    let mut r = WyRand::new(0x5eed_0005);
    let large_n = if q { 10_000 } else { 200_000 };
    let sizes = (0..large_n)
        .map(|_| r.log_uniform(64 << 10, 4 << 20) as u32)
        .collect();
    v.push(one(
        "large".into(),
        Table::Large,
        "ns per pair".into(),
        Kind::Large { sizes },
        false,
    ));
    v.push(one(
        "efficiency".into(),
        Table::Efficiency,
        "live / region (%)".into(),
        Kind::Efficiency { seed: 0x5eed_0006 },
        true,
    ));
    for (size, align) in [
        (16usize, 8usize),
        (64, 8),
        (1024, 8),
        (4096, 4096),
        (5 * 4096 + 1, 8),
    ] {
        v.push(one(
            format!("cost-{size}-{align}"),
            Table::Cost,
            format!("({size}, {align})"),
            Kind::Cost {
                layout: Layout::from_size_align(size, align).unwrap(),
            },
            true,
        ));
    }
    v
}

/// The result of one run of one workload on one allocator.
#[derive(Clone, Debug)]
pub enum Outcome {
    Values(Vec<f64>),
    Timeout,
    NotApplicable,
}

/// Runs one repetition (or warm-up) of `w` on a fresh `C` (over a fresh
/// region if `C` is region-based).
fn run_one<C: Contender>(w: &Workload, cfg: &Cfg, warm: bool) -> Outcome {
    if w.space && !C::REGION {
        return Outcome::NotApplicable;
    }
    let region = C::REGION.then(|| Region::new(cfg.region_len));
    // SAFETY: the region is fresh, used by nothing else, and dropped only
    // after the allocator (below).
    let heap = unsafe { C::create(region.as_ref()) };
    let env = Env {
        chk: Checker {
            allocator: C::NAME,
            workload: workload_name(&w.id),
            range: region.as_ref().map_or((0, usize::MAX), Region::range),
        },
        abandon: C::REGION,
        region_len: cfg.region_len,
        warm,
    };
    watchdog::arm(if w.space {
        cfg.space_budget
    } else {
        cfg.budget
    });
    let r = workloads::run(&*heap, &env, &w.kind);
    watchdog::disarm();
    drop(heap);
    drop(region);
    match r {
        Ok(v) => Outcome::Values(v),
        Err(watchdog::Timeout) => Outcome::Timeout,
    }
}

/// Workload ids as `&'static str` for check messages (interned once).
fn workload_name(id: &str) -> &'static str {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashMap<String, &'static str>>> = Mutex::new(None);
    let mut g = NAMES.lock().unwrap();
    let m = g.get_or_insert_with(HashMap::new);
    m.entry(id.to_string())
        .or_insert_with(|| Box::leak(id.to_string().into_boxed_str()))
}

/// A contender, type-erased.
pub struct Entry {
    pub name: &'static str,
    pub key: &'static str,
    pub version: &'static str,
    pub region: bool,
    run: fn(&Workload, &Cfg, bool) -> Outcome,
}

struct Collect(Vec<Entry>);

impl Visit for Collect {
    fn visit<C: Contender>(&mut self) {
        self.0.push(Entry {
            name: C::NAME,
            key: C::KEY,
            version: C::VERSION,
            region: C::REGION,
            run: run_one::<C>,
        });
    }
}

/// Every contender, in table order.
pub fn entries() -> Vec<Entry> {
    let mut c = Collect(Vec::new());
    strata_bench::contenders::visit_all(&mut c);
    c.0
}

/// Tries of one repetition of a two-thread workload before its result is
/// kept whatever the probes say.
const GATED_TRIES: usize = 4;

/// Runs one repetition of a two-thread workload between two
/// [`quiet_probe`](crate::machine::quiet_probe)s: waits (up to about 2 s)
/// for a probe that passes, runs, and repeats the repetition if the probe
/// after it fails, at most [`GATED_TRIES`] times, counting the discarded
/// tries in `disturbed`. So a repetition during which the machine did not
/// give this process both cores is retried instead of counted, for every
/// allocator alike.
fn gated(mut run: impl FnMut() -> Outcome, disturbed: &mut usize) -> Outcome {
    let mut tries = 0;
    loop {
        for _ in 0..20 {
            if crate::machine::quiet_probe() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let out = run();
        tries += 1;
        if tries == GATED_TRIES || crate::machine::quiet_probe() {
            return out;
        }
        *disturbed += 1;
    }
}

/// All outcomes of one (workload, allocator).
#[derive(Clone, Debug, Default)]
pub struct Cell {
    /// One value vector per completed repetition.
    pub reps: Vec<Vec<f64>>,
    /// Two-thread repetitions discarded because the machine was busy
    /// (see `gated`).
    pub disturbed: usize,
    pub timeout: bool,
    pub not_applicable: bool,
}

/// Median, min, max of column `k`, if the cell has values.
pub fn summary(c: &Cell, k: usize) -> Option<(f64, f64, f64)> {
    if c.timeout || c.not_applicable || c.reps.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = c.reps.iter().map(|r| r[k]).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((med, v[0], v[n - 1]))
}

/// Runs every workload on every entry: a warm-up, then `cfg.reps`
/// repetitions interleaved across allocators (the order rotates each
/// repetition). `cells[w][e]`.
pub fn run_all(cfg: &Cfg, ws: &[Workload], es: &[Entry]) -> Vec<Vec<Cell>> {
    let mut cells = vec![vec![Cell::default(); es.len()]; ws.len()];
    for (wi, w) in ws.iter().enumerate() {
        let t = Instant::now();
        eprintln!("== {} [{}]", w.id, w.columns.join(", "));
        let row = &mut cells[wi];
        if !w.space {
            for (ei, e) in es.iter().enumerate() {
                match (e.run)(w, cfg, true) {
                    Outcome::Timeout => {
                        row[ei].timeout = true;
                        eprintln!("   {:<26} warm-up timed out", e.name);
                    }
                    Outcome::NotApplicable => row[ei].not_applicable = true,
                    Outcome::Values(_) => {}
                }
            }
        }
        let reps = if w.space { 1 } else { cfg.reps };
        for rep in 0..reps {
            for k in 0..es.len() {
                let ei = (k + rep) % es.len();
                let (e, c) = (&es[ei], &mut row[ei]);
                if c.timeout || c.not_applicable {
                    continue;
                }
                let outcome = if w.table.two_threads() {
                    gated(|| (e.run)(w, cfg, false), &mut c.disturbed)
                } else {
                    (e.run)(w, cfg, false)
                };
                match outcome {
                    Outcome::Values(v) => {
                        let shown: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
                        eprintln!(
                            "   {:<26} rep {}/{}: {}",
                            e.name,
                            rep + 1,
                            reps,
                            shown.join(", ")
                        );
                        c.reps.push(v);
                    }
                    Outcome::Timeout => {
                        eprintln!("   {:<26} rep {}/{}: timeout", e.name, rep + 1, reps);
                        c.timeout = true;
                    }
                    Outcome::NotApplicable => c.not_applicable = true,
                }
            }
        }
        eprintln!("   ({:.1} s)", t.elapsed().as_secs_f64());
    }
    cells
}
