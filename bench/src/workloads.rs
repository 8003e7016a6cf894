//! The workloads. Each is generic over the allocator and calls it through
//! the non-inlined shims of [`strata_bench::shim`], checks every block it
//! gets back and returns its metric(s) for one repetition.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use strata_bench::baseline::OneBlock;
use strata_bench::check::Checker;
use strata_bench::contenders::host_cpu;
use strata_bench::rng::WyRand;
use strata_bench::shim;

use crate::cputime::CpuInstant;
use crate::spsc::Ring;
use crate::watchdog::{expired, poll, Timeout};

/// Live slots of the random mix (per thread).
pub const MIX_SLOTS: usize = 10_000;
/// Objects per batch.
pub const BATCH: usize = 10_000;
/// Object size of the producer/consumer workload.
pub const PRODCONS_SIZE: usize = 64;
/// The heap efficiency workload frees a random quarter of the live blocks
/// each time the live bytes reach another 1/`EFFICIENCY_STEPS` of the region.
pub const EFFICIENCY_STEPS: usize = 8;

/// What a workload does, with its prepared (fixed-seed) inputs.
pub enum Kind {
    /// `n` alloc+free pairs of one size, align 8.
    Pair { size: usize, n: usize },
    /// `rounds` batches of [`BATCH`] allocations freed in `order`.
    Batch {
        size: usize,
        order: Vec<u32>,
        rounds: usize,
    },
    /// Random mix over [`MIX_SLOTS`] slots.
    Mix { ops: Vec<u64> },
    /// The random mix alone, then on two threads at once (second op stream).
    Mix2 { ops: [Vec<u64>; 2] },
    /// One thread allocates `n` objects, another frees them.
    ProdCons { n: usize },
    /// Large alloc+free pairs of the given sizes.
    Large { sizes: Vec<u32> },
    /// Fill until the first failure, freeing a random quarter along the way.
    Efficiency { seed: u64 },
    /// Fill with one layout until the first failure.
    Cost { layout: Layout },
}

/// Everything a workload needs besides the allocator.
pub struct Env {
    pub chk: Checker,
    /// Leave blocks behind on timeout (the region is thrown away anyway)
    /// instead of freeing them.
    pub abandon: bool,
    /// Region length, for the space workloads.
    pub region_len: usize,
    /// Warm-up: run about a tenth of the work.
    pub warm: bool,
}

/// One repetition's metric values, or a timeout.
pub type Res = Result<Vec<f64>, Timeout>;

#[inline(always)]
fn tag_of(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995_0000_0001
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

fn part<T>(v: &[T], warm: bool) -> &[T] {
    if warm {
        &v[..v.len().div_ceil(10)]
    } else {
        v
    }
}

fn scaled(n: usize, warm: bool) -> usize {
    if warm {
        n.div_ceil(10)
    } else {
        n
    }
}

/// Mix op encoding: slot in bits 0..32, size in 32..56, log2(align) in 56..64.
pub fn encode_op(slot: usize, size: usize, align: usize) -> u64 {
    debug_assert!(slot < 1 << 32 && size < 1 << 24 && align.is_power_of_two());
    slot as u64 | (size as u64) << 32 | u64::from(align.trailing_zeros()) << 56
}

/// A fixed-seed stream of mix operations: a random slot each time, and the
/// layout to use if that slot is empty (log-uniform size 8 B..16 KiB;
/// alignment 8 or 16 for 90 % of blocks, else 32..4096 log-uniform).
pub fn mix_ops(seed: u64, n: usize) -> Vec<u64> {
    let mut r = WyRand::new(seed);
    (0..n)
        .map(|_| {
            let slot = r.below(MIX_SLOTS);
            let size = r.log_uniform(8, 16 << 10);
            let x = r.below(100);
            let align = if x < 45 {
                8
            } else if x < 90 {
                16
            } else {
                1 << (5 + r.below(8)) // 32 ..= 4096
            };
            encode_op(slot, size, align)
        })
        .collect()
}

/// Runs one repetition.
pub fn run<A: GlobalAlloc + Sync>(a: &A, env: &Env, kind: &Kind) -> Res {
    match kind {
        Kind::Pair { size, n } => pair(a, env, *size, scaled(*n, env.warm)),
        Kind::Batch {
            size,
            order,
            rounds,
        } => batch(a, env, *size, order, if env.warm { 1 } else { *rounds }),
        Kind::Mix { ops } => mix(a, env, part(ops, env.warm)),
        Kind::Mix2 { ops } => mix2(a, env, part(&ops[0], env.warm), part(&ops[1], env.warm)),
        Kind::ProdCons { n } => prodcons(a, env, scaled(*n, env.warm)),
        Kind::Large { sizes } => large(a, env, part(sizes, env.warm)),
        Kind::Efficiency { seed } => efficiency(a, env, *seed),
        Kind::Cost { layout } => cost(a, env, *layout),
    }
}

/// ns per 64 B pair of the pair loop (shim calls, checks, tags) around an
/// allocator that does nothing: the part of every pair figure that is not
/// the allocator's.
pub fn loop_overhead(n: usize) -> f64 {
    let none = OneBlock::new();
    let env = Env {
        chk: Checker {
            allocator: "(none)",
            workload: "loop overhead",
            range: (0, usize::MAX),
        },
        abandon: false,
        region_len: 0,
        warm: false,
    };
    let mut v: Vec<f64> = (0..5)
        .map(|_| pair(&none, &env, 64, n).expect("no budget armed")[0])
        .collect();
    v.sort_by(f64::total_cmp);
    v[2]
}

fn pair<A: GlobalAlloc>(a: &A, env: &Env, size: usize, n: usize) -> Res {
    let l = Layout::from_size_align(size, 8).unwrap();
    let chk = &env.chk;
    let t0 = CpuInstant::now();
    for i in 0..n {
        poll(i)?;
        let tag = tag_of(i);
        // SAFETY: `l` has a non-zero size; the block is checked non-null,
        // tagged, verified and freed with the layout it was allocated with.
        unsafe {
            let p = shim::alloc(a, l);
            chk.accept(p, l, tag);
            chk.verify(p, size, tag);
            shim::dealloc(a, p, l);
        }
    }
    Ok(vec![ns_per(t0.elapsed(), n)])
}

fn batch<A: GlobalAlloc>(a: &A, env: &Env, size: usize, order: &[u32], rounds: usize) -> Res {
    let l = Layout::from_size_align(size, 8).unwrap();
    let chk = &env.chk;
    let n = order.len();
    let mut ptrs = vec![null_mut::<u8>(); n];
    let t0 = CpuInstant::now();
    for r in 0..rounds {
        // Checked per round and phase: one phase of a quadratic allocator
        // takes well under a second at this batch size.
        if expired() {
            return Err(Timeout);
        }
        let base = r * n;
        for (i, slot) in ptrs.iter_mut().enumerate() {
            // SAFETY: `l` has a non-zero size; the block is checked and tagged.
            unsafe {
                let p = shim::alloc(a, l);
                chk.accept(p, l, tag_of(base + i));
                *slot = p;
            }
        }
        if expired() {
            if !env.abandon {
                for (i, &p) in ptrs.iter().enumerate() {
                    // SAFETY: allocated above with `l`, not yet freed.
                    unsafe {
                        chk.verify(p, size, tag_of(base + i));
                        shim::dealloc(a, p, l);
                    }
                }
            }
            return Err(Timeout);
        }
        for &j in order {
            let j = j as usize;
            // SAFETY: `order` is a permutation: each block allocated above is
            // verified and freed exactly once, with its own layout.
            unsafe {
                chk.verify(ptrs[j], size, tag_of(base + j));
                shim::dealloc(a, ptrs[j], l);
            }
        }
    }
    Ok(vec![ns_per(t0.elapsed(), rounds * n)])
}

#[derive(Clone, Copy)]
struct Slot {
    p: *mut u8,
    layout: Layout,
    tag: u64,
}

const EMPTY: Slot = Slot {
    p: null_mut(),
    layout: Layout::new::<u8>(),
    tag: 0,
};

/// The timed mix loop: each op frees its slot's block if there is one,
/// else allocates into it.
fn mix_loop<A: GlobalAlloc>(
    a: &A,
    chk: &Checker,
    ops: &[u64],
    slots: &mut [Slot],
    salt: usize,
    cpu_time: bool,
) -> Result<Duration, Timeout> {
    let (wall, cpu) = (Instant::now(), CpuInstant::now());
    for (i, &op) in ops.iter().enumerate() {
        poll(i)?;
        let s = &mut slots[op as u32 as usize];
        if s.p.is_null() {
            let size = ((op >> 32) & 0xff_ffff) as usize;
            let align = 1usize << (op >> 56);
            // SAFETY: `encode_op` stored a non-zero size and a power-of-two
            // alignment, and sizes stay far below `isize::MAX`.
            let layout = unsafe { Layout::from_size_align_unchecked(size, align) };
            let tag = tag_of(i ^ salt);
            // SAFETY: non-zero size; the block is checked and tagged.
            let p = unsafe { shim::alloc(a, layout) };
            // SAFETY: `p` is null or a fresh block of `layout.size()` bytes.
            unsafe { chk.accept(p, layout, tag) };
            *s = Slot { p, layout, tag };
        } else {
            // SAFETY: the slot holds a live block allocated with `s.layout`.
            unsafe {
                chk.verify(s.p, s.layout.size(), s.tag);
                shim::dealloc(a, s.p, s.layout);
            }
            s.p = null_mut();
        }
    }
    Ok(if cpu_time {
        cpu.elapsed()
    } else {
        wall.elapsed()
    })
}

fn free_slots<A: GlobalAlloc>(a: &A, chk: &Checker, slots: &mut [Slot]) {
    for s in slots.iter_mut().filter(|s| !s.p.is_null()) {
        // SAFETY: the slot holds a live block allocated with `s.layout`.
        unsafe {
            chk.verify(s.p, s.layout.size(), s.tag);
            shim::dealloc(a, s.p, s.layout);
        }
        s.p = null_mut();
    }
}

/// A mix run on the calling thread: (CPU or wall time of the ops) or
/// timeout; the live blocks are freed afterwards (untimed) unless abandoned
/// on timeout.
fn mix_thread<A: GlobalAlloc>(
    a: &A,
    env: &Env,
    ops: &[u64],
    salt: usize,
    cpu_time: bool,
) -> Result<Duration, Timeout> {
    let mut slots = vec![EMPTY; MIX_SLOTS];
    let r = mix_loop(a, &env.chk, ops, &mut slots, salt, cpu_time);
    if r.is_ok() || !env.abandon {
        free_slots(a, &env.chk, &mut slots);
    }
    r
}

fn mix<A: GlobalAlloc>(a: &A, env: &Env, ops: &[u64]) -> Res {
    let d = mix_thread(a, env, ops, 0, true)?;
    Ok(vec![ns_per(d, ops.len())])
}

/// Values: one thread M calls/s, two threads M calls/s (total), ratio.
fn mix2<A: GlobalAlloc + Sync>(a: &A, env: &Env, ops0: &[u64], ops1: &[u64]) -> Res {
    let one = mix_thread(a, env, ops0, 0, false)?;
    let one_rate = ops0.len() as f64 / one.as_secs_f64();
    let start = Barrier::new(2);
    let (r0, r1) = std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn_scoped(s, || {
                host_cpu::id();
                start.wait();
                let t = Instant::now();
                mix_thread(a, env, ops1, 1 << 40, false).map(|d| (t, d))
            })
            .expect("spawn mix thread");
        start.wait();
        let t = Instant::now();
        let mine = mix_thread(a, env, ops0, 1 << 41, false).map(|d| (t, d));
        (mine, other.join().expect("mix thread panicked"))
    });
    let ((t0, d0), (t1, d1)) = (r0?, r1?);
    let begin = t0.min(t1);
    let end = (t0 + d0).max(t1 + d1);
    let two_rate = (ops0.len() + ops1.len()) as f64 / (end - begin).as_secs_f64();
    Ok(vec![one_rate / 1e6, two_rate / 1e6, two_rate / one_rate])
}

/// Waits a little: spins first, then yields (the machine may have fewer
/// free cores than threads).
#[inline]
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn prodcons<A: GlobalAlloc + Sync>(a: &A, env: &Env, n: usize) -> Res {
    let l = Layout::from_size_align(PRODCONS_SIZE, 8).unwrap();
    let chk = &env.chk;
    let ring = Ring::new(1024);
    let (mut tx, mut rx) = ring.split();
    let done = AtomicBool::new(false);
    let produced = AtomicUsize::new(0);
    let start = Barrier::new(2);
    let (elapsed, received) = std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn_scoped(s, || {
                host_cpu::id();
                start.wait();
                let mut i = 0;
                'produce: while i < n {
                    if poll(i).is_err() {
                        break;
                    }
                    // SAFETY: non-zero size; the block is checked, tagged and
                    // handed over (ownership moves to the consumer).
                    let p = unsafe { shim::alloc(a, l) };
                    // SAFETY: `p` is null or a fresh block of 64 bytes.
                    unsafe { chk.accept(p, l, tag_of(i)) };
                    let mut spins = 0;
                    while !tx.push(p as usize) {
                        if expired() {
                            // SAFETY: `p` was not handed over; free it here.
                            unsafe { shim::dealloc(a, p, l) };
                            break 'produce;
                        }
                        backoff(&mut spins);
                    }
                    i += 1;
                }
                produced.store(i, Ordering::Release);
                done.store(true, Ordering::Release);
            })
            .expect("spawn producer");
        start.wait();
        let t = Instant::now();
        let mut got = 0;
        while got < n {
            let mut spins = 0;
            let p = loop {
                if let Some(p) = rx.pop() {
                    break Some(p as *mut u8);
                }
                if done.load(Ordering::Acquire) && got == produced.load(Ordering::Acquire) {
                    break None;
                }
                backoff(&mut spins);
            };
            let Some(p) = p else { break };
            // SAFETY: the producer allocated `p` with `l`, tagged it with
            // `tag_of(got)` (the ring is FIFO) and handed it over.
            unsafe {
                chk.verify(p, PRODCONS_SIZE, tag_of(got));
                shim::dealloc(a, p, l);
            }
            got += 1;
        }
        (t.elapsed(), got)
    });
    if received < n {
        return Err(Timeout);
    }
    Ok(vec![n as f64 / elapsed.as_secs_f64() / 1e6])
}

fn large<A: GlobalAlloc>(a: &A, env: &Env, sizes: &[u32]) -> Res {
    let chk = &env.chk;
    let t0 = CpuInstant::now();
    for (i, &size) in sizes.iter().enumerate() {
        if expired() {
            return Err(Timeout);
        }
        let l = Layout::from_size_align(size as usize, 8).unwrap();
        let tag = tag_of(i);
        // SAFETY: non-zero size; the block is checked, tagged, verified and
        // freed with its own layout.
        unsafe {
            let p = shim::alloc(a, l);
            chk.accept(p, l, tag);
            chk.verify(p, l.size(), tag);
            shim::dealloc(a, p, l);
        }
    }
    Ok(vec![ns_per(t0.elapsed(), sizes.len())])
}

/// Value: live requested bytes at the first failure, as % of the region.
///
/// Each time the live bytes first reach k/8 of the region (k = 1..7), a
/// random quarter of the live blocks is freed, leaving holes all over the
/// heap; past 7/8 the heap is filled until an allocation fails.
fn efficiency<A: GlobalAlloc>(a: &A, env: &Env, seed: u64) -> Res {
    let chk = &env.chk;
    let mut r = WyRand::new(seed);
    let mut live: Vec<(*mut u8, usize, u64)> = Vec::with_capacity(env.region_len / 1024);
    let mut live_bytes = 0usize;
    let step = env.region_len / EFFICIENCY_STEPS;
    let mut purge_at = step;
    let mut n = 0usize;
    loop {
        poll(n)?;
        let size = r.log_uniform(8, 16 << 10);
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { shim::alloc(a, l) };
        if p.is_null() {
            break;
        }
        let tag = tag_of(n);
        // SAFETY: a fresh block of `size` bytes.
        unsafe { chk.accept_nonnull(p, l, tag) };
        live.push((p, size, tag));
        live_bytes += size;
        n += 1;
        if live_bytes >= purge_at && purge_at < env.region_len {
            purge_at += step;
            for _ in 0..live.len() / 4 {
                let (p, size, tag) = live.swap_remove(r.below(live.len()));
                // SAFETY: a live block allocated with (size, 8).
                unsafe {
                    chk.verify(p, size, tag);
                    shim::dealloc(a, p, Layout::from_size_align_unchecked(size, 8));
                }
                live_bytes -= size;
            }
        }
    }
    for &(p, size, tag) in &live {
        // SAFETY: every live block is still allocated.
        unsafe { chk.verify(p, size, tag) };
    }
    Ok(vec![100.0 * live_bytes as f64 / env.region_len as f64])
}

/// Value: region bytes per allocation when filling with one layout.
fn cost<A: GlobalAlloc>(a: &A, env: &Env, l: Layout) -> Res {
    let chk = &env.chk;
    let base = chk.range.0;
    let mut offs: Vec<u32> = Vec::with_capacity(env.region_len / l.size().max(16) + 1);
    loop {
        poll(offs.len())?;
        // SAFETY: non-zero size.
        let p = unsafe { shim::alloc(a, l) };
        if p.is_null() {
            break;
        }
        // SAFETY: a fresh block of `l.size()` bytes.
        unsafe { chk.accept_nonnull(p, l, tag_of(offs.len())) };
        offs.push(u32::try_from(p as usize - base).expect("region larger than 4 GiB"));
    }
    for (i, &o) in offs.iter().enumerate() {
        // SAFETY: every block is still allocated.
        unsafe { chk.verify((base + o as usize) as *mut u8, l.size(), tag_of(i)) };
    }
    if offs.is_empty() {
        return Ok(vec![f64::INFINITY]);
    }
    Ok(vec![env.region_len as f64 / offs.len() as f64])
}
