//! strata as the global allocator of an ordinary program.
//!
//! ```text
//! cargo run --release --example host --features std
//! ```
//!
//! Eight threads build maps of strings, sort vectors, format text and send
//! boxed messages to each other over a channel (so blocks are freed on
//! another thread than the one that allocated them); the main thread checks
//! every result and prints the heap's statistics.
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: strata_alloc::HostHeap = strata_alloc::HostHeap::new();

const THREADS: u64 = 8;
const ROUNDS: u64 = 20_000;

/// One thread's work; returns a checksum the main thread recomputes.
fn work(t: u64, tx: mpsc::Sender<Box<(u64, String)>>) -> u64 {
    let mut words: HashMap<String, Vec<u64>> = HashMap::new();
    let mut order = BTreeMap::new();
    let mut text = String::new();
    for i in 0..ROUNDS {
        let key = format!("t{t}-k{}", i % 1000);
        words.entry(key.clone()).or_default().push(i);
        order.insert(i * 7 % ROUNDS, key);
        if i % 100 == 0 {
            text.clear();
            write!(text, "{t}:{i}:{}", "x".repeat((i % 300) as usize)).unwrap();
            tx.send(Box::new((t, text.clone()))).unwrap();
        }
    }
    let mut sorted: Vec<u64> = words.values().map(|v| v.iter().sum()).collect();
    sorted.sort_unstable();
    assert_eq!(words.len(), 1000);
    assert_eq!(order.len() as u64, ROUNDS);
    sorted.iter().sum::<u64>() + order.values().map(|k| k.len() as u64).sum::<u64>()
}

fn main() {
    let (tx, rx) = mpsc::channel();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || work(t, tx))
        })
        .collect();
    drop(tx);

    // Messages are freed here, on the main thread.
    let mut messages = 0;
    for msg in rx {
        let (t, text) = *msg;
        assert!(text.starts_with(&format!("{t}:")));
        messages += 1;
    }
    let sums: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();

    // Every thread sums 0..ROUNDS once, plus the lengths of its keys.
    let keys: u64 = (0..ROUNDS)
        .map(|i| format!("t0-k{}", i % 1000).len() as u64)
        .sum();
    let expect = ROUNDS * (ROUNDS - 1) / 2 + keys;
    assert!(sums.iter().all(|&s| s == expect), "{sums:?} != {expect}");
    assert_eq!(messages, THREADS * ROUNDS / 100);

    let inside = GLOBAL.heap().regions().any(|r| {
        let p = sums.as_ptr() as u64;
        r.start.as_u64() <= p && p < r.end.as_u64()
    });
    assert!(inside, "the program's memory comes from strata");
    println!(
        "{THREADS} threads, {messages} messages, checksums agree; {} MiB mapped in {} chunks",
        GLOBAL.mapped_bytes() >> 20,
        GLOBAL.chunks()
    );
    println!("{}", GLOBAL.stats());
}
