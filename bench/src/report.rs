//! The markdown report and the SVG chart.

use std::fmt::Write as _;

use crate::harness::{summary, Cell, Cfg, Entry, Table, Workload};

/// A headline metric: shown in the chart and checked against strata's
/// targets.
pub struct Headline {
    pub workload: &'static str,
    pub column: usize,
    pub label: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// Target as written, and the limit a measurement must meet.
    pub target: &'static str,
    pub limit: f64,
}

pub const HEADLINES: [Headline; 8] = [
    Headline {
        workload: "pair-64",
        column: 0,
        label: "Alloc+free pair, 64 B",
        unit: "ns",
        higher_is_better: false,
        target: "≤ 5 ns",
        limit: 5.0,
    },
    Headline {
        workload: "mix",
        column: 0,
        label: "Random mix",
        unit: "ns/call",
        higher_is_better: false,
        target: "≤ 25 ns",
        limit: 25.0,
    },
    Headline {
        workload: "mix2",
        column: 2,
        label: "Two-thread mix scaling",
        unit: "×",
        higher_is_better: true,
        target: "≥ 1.85×",
        limit: 1.85,
    },
    Headline {
        workload: "prodcons",
        column: 0,
        label: "Producer/consumer",
        unit: "M obj/s",
        higher_is_better: true,
        target: "≥ 10 M/s",
        limit: 10.0,
    },
    Headline {
        workload: "large",
        column: 0,
        label: "Large pair, 64 KiB..4 MiB",
        unit: "ns",
        higher_is_better: false,
        target: "≤ 40 ns",
        limit: 40.0,
    },
    Headline {
        workload: "batch-1024-random",
        column: 0,
        label: "1 KiB batch, random-order free",
        unit: "ns",
        higher_is_better: false,
        target: "≤ 10 ns",
        limit: 10.0,
    },
    Headline {
        workload: "efficiency",
        column: 0,
        label: "Heap efficiency",
        unit: "%",
        higher_is_better: true,
        target: "≥ 92 %",
        limit: 92.0,
    },
    // 4096 B per page-aligned page plus at most 0.5 % metadata.
    Headline {
        workload: "cost-4096-4096",
        column: 0,
        label: "Cost of (4096, 4096)",
        unit: "B",
        higher_is_better: false,
        target: "4096 B (+ ≤ 0.5 % metadata)",
        limit: 4096.0 * 1.005,
    },
];

fn fmt_num(x: f64, decimals: usize) -> String {
    if x.is_infinite() {
        "∞".into()
    } else if x.abs() >= 10_000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.decimals$}")
    }
}

fn cell_text(c: &Cell, k: usize, decimals: usize, reps: usize) -> String {
    if c.not_applicable {
        return "—".into();
    }
    if c.timeout {
        return "timeout".into();
    }
    match summary(c, k) {
        Some((m, lo, hi)) if reps > 1 && c.reps.len() > 1 => {
            format!(
                "{} ({}–{})",
                fmt_num(m, decimals),
                fmt_num(lo, decimals),
                fmt_num(hi, decimals)
            )
        }
        Some((m, _, _)) => fmt_num(m, decimals),
        None => "—".into(),
    }
}

fn find<'a>(ws: &'a [Workload], id: &str) -> Option<(usize, &'a Workload)> {
    ws.iter().enumerate().find(|(_, w)| w.id == id)
}

/// Facts about the run besides the measurements.
pub struct RunInfo {
    /// `(label, value)` lines about the machine.
    pub machine: Vec<(&'static str, String)>,
    /// Seconds the suite ran.
    pub secs: f64,
    /// ns per 64 B pair of the pair loop around a do-nothing allocator.
    pub overhead: f64,
    /// Two-thread scaling of a pure compute loop at the start.
    pub scaling: f64,
}

/// The markdown report.
pub fn markdown(
    cfg: &Cfg,
    ws: &[Workload],
    es: &[Entry],
    cells: &[Vec<Cell>],
    info: &RunInfo,
) -> String {
    let RunInfo {
        machine,
        secs,
        overhead,
        scaling,
    } = info;
    let mut s = String::new();
    let mode = if cfg.quick {
        "quick (`--quick`)"
    } else {
        "full"
    };
    let _ = writeln!(s, "# strata benchmark results\n");
    let _ = writeln!(
        s,
        "Produced by `cargo run --release --manifest-path bench/Cargo.toml{}` in {:.0} s. \
         Mode: {mode}: one warm-up, then {} repetitions per allocator and workload, \
         interleaved across allocators; cells show the median (min–max). A repetition \
         that runs past its budget ({:.1} s; {:.0} s for fill-until-failure runs) is \
         abandoned and the cell shows `timeout`; `—` means not applicable (hosted \
         allocators have no region to fill).\n",
        if cfg.quick { " -- --quick" } else { "" },
        secs,
        cfg.reps,
        cfg.budget.as_secs_f64(),
        cfg.space_budget.as_secs_f64(),
    );
    let _ = writeln!(
        s,
        "Every allocator is called through non-inlined shims, as a `#[global_allocator]` \
         is. Each region-based allocator gets a fresh {} MiB region (2 MiB-aligned, every \
         page prefaulted) for every repetition; strata manages it with phys→virt offset 0 \
         and one CPU id per benchmark thread. Every block is checked (alignment, inside \
         the region, a tag at both ends verified before it is freed); a failed check \
         aborts the run. Single-threaded workloads are timed in the benchmark thread's \
         CPU time (time spent descheduled while other work runs on the machine does \
         not count); the two-thread and producer/consumer workloads in wall-clock \
         time, so they are sensitive to other load (see the load average below).\n",
        cfg.region_len >> 20
    );
    let _ = writeln!(s, "## Machine\n");
    for (k, v) in machine {
        let _ = writeln!(s, "- {k}: {v}");
    }
    let _ = writeln!(
        s,
        "\n## Allocators\n\n| allocator | crate / version | memory |\n|---|---|---|"
    );
    for e in es {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            e.name,
            e.version,
            if e.region { "region" } else { "hosted (OS)" }
        );
    }
    let stratas: Vec<(usize, &Entry)> = es
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name.starts_with("strata"))
        .collect();
    if !stratas.is_empty() {
        let _ = writeln!(s, "\n## strata against its targets\n");
        let _ = write!(s, "| metric | target |");
        for (_, e) in &stratas {
            let _ = write!(s, " {} |", e.name);
        }
        let _ = write!(s, "\n|---|---|");
        for _ in &stratas {
            let _ = write!(s, "---|");
        }
        let _ = writeln!(s);
        for h in &HEADLINES {
            let Some((wi, w)) = find(ws, h.workload) else {
                continue;
            };
            let _ = write!(s, "| {} ({}) | {} |", h.label, h.unit, h.target);
            for (ei, _) in &stratas {
                let c = &cells[wi][*ei];
                let txt = cell_text(c, h.column, w.table.decimals().max(1), cfg.reps);
                let verdict = match summary(c, h.column) {
                    Some((m, _, _))
                        if (h.higher_is_better && m >= h.limit)
                            || (!h.higher_is_better && m <= h.limit) =>
                    {
                        " ✅"
                    }
                    Some(_) | None => " ❌",
                };
                let _ = write!(s, " {txt}{verdict} |");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "\nInstructions per 64 B / 256 B pair (target ≤ 50 Ir): run `bench/callgrind.sh`."
        );
    }
    for t in Table::ALL {
        let cols: Vec<(usize, usize, &str)> = ws
            .iter()
            .enumerate()
            .filter(|(_, w)| w.table == t)
            .flat_map(|(wi, w)| {
                w.columns
                    .iter()
                    .enumerate()
                    .map(move |(k, c)| (wi, k, c.as_str()))
            })
            .collect();
        if cols.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n## {}\n\n{}\n", t.title(), t.note());
        if t == Table::TwoThreads {
            let _ = writeln!(
                s,
                "What the machine itself allowed at the start of the run: two threads of a pure \
                 compute loop ran {scaling:.2}× as fast as one (2.0 with two idle cores).\n"
            );
        }
        if t == Table::Pairs {
            let _ = writeln!(
                s,
                "The loop itself (two non-inlined calls, checks and tags around an allocator \
                 that does nothing) takes {overhead:.1} ns per 64 B pair; it is included in \
                 every figure of this table.\n"
            );
        }
        let _ = write!(s, "| allocator |");
        for (_, _, c) in &cols {
            let _ = write!(s, " {c} |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &cols {
            let _ = write!(s, "---:|");
        }
        let _ = writeln!(s);
        for (ei, e) in es.iter().enumerate() {
            let _ = write!(s, "| {} |", e.name);
            for &(wi, k, _) in &cols {
                let _ = write!(
                    s,
                    " {} |",
                    cell_text(&cells[wi][ei], k, t.decimals(), cfg.reps)
                );
            }
            let _ = writeln!(s);
        }
        if t.two_threads() {
            let retried: Vec<String> = es
                .iter()
                .enumerate()
                .filter_map(|(ei, e)| {
                    let mut wis: Vec<usize> = cols.iter().map(|&(wi, _, _)| wi).collect();
                    wis.dedup();
                    let n: usize = wis.iter().map(|&wi| cells[wi][ei].disturbed).sum();
                    (n > 0).then(|| format!("{} {n}", e.name))
                })
                .collect();
            let _ = writeln!(
                s,
                "\nRepetitions run again because the compute probe showed a busy machine: {}.",
                if retried.is_empty() {
                    "none".to_string()
                } else {
                    retried.join(", ")
                }
            );
        }
    }
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const PALETTE: [&str; 10] = [
    "#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The summary chart: one panel per headline metric, one bar per allocator
/// (median; a thin line spans min–max), with strata's target dashed.
pub fn svg(
    cfg: &Cfg,
    ws: &[Workload],
    es: &[Entry],
    cells: &[Vec<Cell>],
    machine_line: &str,
) -> String {
    let (cols, panel_w, label_w, bar_w) = (2usize, 560.0, 180.0, 290.0);
    let row_h = 20.0;
    let panel_h = 48.0 + row_h * es.len() as f64 + 12.0;
    let top = 64.0;
    let rows = HEADLINES.len().div_ceil(cols);
    let (w, h) = (
        panel_w * cols as f64 + 20.0,
        top + panel_h * rows as f64 + 30.0,
    );
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="20" y="26" font-size="18" font-weight="bold">strata benchmarks ({} mode): medians of {} repetitions (space metrics: one run)</text>"#,
        if cfg.quick { "quick" } else { "full" },
        cfg.reps
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="46" fill="#555">{}</text>"##,
        esc(machine_line)
    );
    for (i, hd) in HEADLINES.iter().enumerate() {
        let x0 = 10.0 + panel_w * (i % cols) as f64;
        let y0 = top + panel_h * (i / cols) as f64;
        let Some((wi, _)) = find(ws, hd.workload) else {
            continue;
        };
        let vals: Vec<Option<(f64, f64, f64)>> = (0..es.len())
            .map(|e| summary(&cells[wi][e], hd.column))
            .collect();
        let finite: Vec<f64> = vals
            .iter()
            .flatten()
            .flat_map(|&(m, lo, hi)| [m, lo, hi])
            .filter(|x| x.is_finite() && *x > 0.0)
            .collect();
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}" font-size="14" font-weight="bold">{} ({}, {} is better)</text>"#,
            y0 + 18.0,
            esc(hd.label),
            esc(hd.unit),
            if hd.higher_is_better {
                "higher"
            } else {
                "lower"
            }
        );
        let mut lo = finite
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(hd.limit);
        let mut hi = finite.iter().copied().fold(0.0f64, f64::max).max(hd.limit);
        let log = lo > 0.0 && hi / lo > 30.0;
        if log {
            lo /= 1.5;
            hi *= 1.5;
        } else {
            lo = 0.0;
            hi *= 1.1;
        }
        let scale = |v: f64| -> f64 {
            let f = if log {
                (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
            } else {
                (v - lo) / (hi - lo)
            };
            x0 + label_w + bar_w * f.clamp(0.0, 1.0)
        };
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" fill="#777" font-size="10">{} scale</text>"##,
            x0 + label_w,
            y0 + 34.0,
            if log { "log" } else { "linear" }
        );
        for (ei, e) in es.iter().enumerate() {
            let y = y0 + 42.0 + row_h * ei as f64;
            let strata = e.name.starts_with("strata");
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end"{}>{}</text>"#,
                x0 + label_w - 6.0,
                y + 13.0,
                if strata { r#" font-weight="bold""# } else { "" },
                esc(e.name)
            );
            let c = &cells[wi][ei];
            match vals[ei] {
                Some((m, mn, mx)) if m.is_finite() => {
                    let xm = scale(m);
                    let _ = writeln!(
                        s,
                        r#"<rect x="{}" y="{}" width="{:.1}" height="{}" fill="{}"/>"#,
                        x0 + label_w,
                        y + 3.0,
                        (xm - x0 - label_w).max(1.0),
                        row_h - 6.0,
                        PALETTE[ei % PALETTE.len()]
                    );
                    if mx > mn {
                        let _ = writeln!(
                            s,
                            r##"<line x1="{:.1}" x2="{:.1}" y1="{}" y2="{}" stroke="#000" stroke-width="1.2"/>"##,
                            scale(mn),
                            scale(mx),
                            y + row_h / 2.0,
                            y + row_h / 2.0
                        );
                    }
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{}">{}</text>"#,
                        xm.max(scale(mx)) + 4.0,
                        y + 13.0,
                        fmt_num(m, 2)
                    );
                }
                _ => {
                    let (t, col) = if c.timeout {
                        ("timeout", "#b00000")
                    } else if c.not_applicable {
                        ("n/a (hosted)", "#999999")
                    } else {
                        ("—", "#999999")
                    };
                    let _ = writeln!(
                        s,
                        r#"<text x="{}" y="{}" fill="{col}">{t}</text>"#,
                        x0 + label_w + 4.0,
                        y + 13.0
                    );
                }
            }
        }
        let xt = scale(hd.limit);
        let (ya, yb) = (y0 + 38.0, y0 + 44.0 + row_h * es.len() as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xt:.1}" x2="{xt:.1}" y1="{ya}" y2="{yb}" stroke="#d62728" stroke-dasharray="4,3"/><text x="{xt:.1}" y="{}" fill="#d62728" font-size="10" text-anchor="middle">strata target {}</text>"##,
            yb + 11.0,
            esc(hd.target)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="20" y="{}" fill="#555" font-size="11">Bars: median; black line: min–max. Full tables: RESULTS.md.</text>"##,
        h - 10.0
    );
    s.push_str("</svg>\n");
    s
}
