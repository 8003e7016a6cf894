//! Fill until the first failure: how many objects of one layout each
//! region-based allocator fits in a fresh heap of a given size.
//!
//!   cargo run --release --manifest-path bench/Cargo.toml --bin fill
//!
//! Every allocator gets the same bytes: its region plus the size of its
//! own heap object (so a large `Heap` struct costs what it costs in a
//! firmware's RAM). strata runs twice, with `max_cpus` 1 and 4. The table
//! (markdown) goes to stdout and to `bench/results/FILL.md`; each cell is
//! the count and its ratio to linked_list_allocator's, the best packer.

use std::alloc::Layout;
use std::fmt::Write as _;

use strata_bench::contenders::{visit_all, Contender, Visit};
use strata_bench::region::Region;
use strata_bench::shim;

const KIB: usize = 1024;
const HEAPS: [usize; 4] = [64 * KIB, 256 * KIB, 1024 * KIB, 16 * 1024 * KIB];
const LAYOUTS: [(usize, usize); 6] = [
    (16, 8),
    (64, 8),
    (256, 8),
    (1024, 8),
    (4096, 8),
    (4096, 4096),
];

/// Objects of `l` that `C` fits in `total` bytes (region + heap object).
fn fill<C: Contender>(total: usize, l: Layout) -> usize {
    let Some(len) = total.checked_sub(size_of::<C>()).map(|n| n / 4096 * 4096) else {
        return 0;
    };
    if len == 0 {
        return 0;
    }
    let region = Region::of(len);
    // SAFETY: the region is used by nothing else and outlives the
    // allocator and every block (both dropped at the end of this function;
    // the blocks are never freed, the whole region goes back at once).
    let Ok(a) = std::panic::catch_unwind(|| unsafe { C::create(Some(&region)) }) else {
        return 0;
    };
    let mut n = 0;
    // SAFETY: non-zero size; blocks are never used.
    while !unsafe { shim::alloc(&*a, l) }.is_null() {
        n += 1;
    }
    // The allocator forgets its blocks with the region.
    std::mem::forget(a);
    n
}

/// Rows: (name, counts per heap × layout).
struct Table(Vec<(String, Vec<usize>)>);

impl Visit for Table {
    fn visit<C: Contender>(&mut self) {
        if !C::REGION || C::NAME.contains("non-preemptive") {
            return;
        }
        let cpus: &[Option<usize>] = if C::NAME.starts_with("strata") {
            &[Some(1), Some(4)]
        } else {
            &[None]
        };
        for &c in cpus {
            if let Some(c) = c {
                std::env::set_var("STRATA_CPUS", c.to_string());
            }
            let mut counts = Vec::new();
            for &h in &HEAPS {
                for &(s, a) in &LAYOUTS {
                    counts.push(fill::<C>(h, Layout::from_size_align(s, a).unwrap()));
                }
            }
            let name = match c {
                Some(c) => format!("{} ({c} CPU{})", C::NAME, if c > 1 { "s" } else { "" }),
                None => C::NAME.to_string(),
            };
            self.0.push((name, counts));
            std::env::remove_var("STRATA_CPUS");
        }
    }
}

fn main() {
    std::panic::set_hook(Box::new(|_| {}));
    let mut t = Table(Vec::new());
    visit_all(&mut t);
    let best =
        t.0.iter()
            .find(|(n, _)| n.starts_with("linked_list"))
            .map(|(_, c)| c.clone())
            .expect("linked_list_allocator row");
    let mut out = String::new();
    let _ = writeln!(out, "# Fill until the first failure\n");
    let _ = writeln!(
        out,
        "Objects that fit in a fresh heap, each allocator given the same bytes (its region \
         plus its heap object); in brackets the ratio to linked_list_allocator. \
         `cargo run --release --manifest-path bench/Cargo.toml --bin fill`.\n"
    );
    for (hi, &h) in HEAPS.iter().enumerate() {
        let _ = writeln!(out, "## {} KiB\n", h / KIB);
        let mut head = String::from("| allocator |");
        let mut rule = String::from("|---|");
        for (s, a) in LAYOUTS {
            let _ = write!(head, " ({s}, {a}) |");
            rule += "---:|";
        }
        let _ = writeln!(out, "{head}\n{rule}");
        for (name, counts) in &t.0 {
            let mut row = format!("| {name} |");
            for li in 0..LAYOUTS.len() {
                let i = hi * LAYOUTS.len() + li;
                let ratio = counts[i] as f64 / best[i].max(1) as f64;
                let _ = write!(row, " {} ({ratio:.2}) |", counts[i]);
            }
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out);
    }
    print!("{out}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/results/FILL.md");
    std::fs::write(path, &out).expect("write FILL.md");
}
