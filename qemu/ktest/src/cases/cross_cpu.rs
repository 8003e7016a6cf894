//! `cross_cpu_free`: objects allocated on one CPU are freed on another.
//!
//! Every CPU allocates batches of objects, writes a header and a fill
//! pattern into each, and pushes them onto the inbox of a random other CPU.
//! Between batches it empties its own inbox: each object received is
//! checked (header, sender, pattern) and freed on the receiving CPU, so
//! frees reach caches and spans that belong to another CPU. At the end the
//! number of objects received must equal the number sent.
//!
//! The inboxes are intrusive lists: an object's first word links to the
//! next, so the queue itself never allocates.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::block::Block;
use crate::note::{fail, passed, skipped, Note};
use crate::pattern::Rng;
use crate::sync::SpinLock;
use crate::{Ctx, Machine, TestResult, MAX_CPUS};

/// Batches per CPU.
const ROUNDS: usize = 64;
/// Objects per batch.
const BATCH: usize = 48;
/// Header words: next object, size, sending CPU, pattern seed.
const HEADER: usize = 32;

/// Objects waiting for one CPU, as the address of the first (0: none).
pub(crate) struct Inbox {
    head: usize,
}

static INBOXES: [SpinLock<Inbox>; MAX_CPUS] =
    [const { SpinLock::new(Inbox { head: 0 }) }; MAX_CPUS];
static SENT: AtomicUsize = AtomicUsize::new(0);
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

/// A message object: a block with a header.
struct Message(Block);

impl Message {
    fn new(size: usize, sender: usize, seed: u64) -> Option<Message> {
        let mut block = Block::new(size, 8)?;
        block.write_word(8, size as u64);
        block.write_word(16, sender as u64);
        block.write_word(24, seed);
        block.fill_from(HEADER, seed);
        Some(Message(block))
    }

    /// Checks the message's contents, as received by `receiver`.
    fn check(&self, receiver: usize) -> Result<(), Note> {
        let block = &self.0;
        let sender = block.read_word(16) as usize;
        let seed = block.read_word(24);
        if sender == receiver || sender >= MAX_CPUS {
            fail!(
                "object {:#x} from cpu {sender} delivered to cpu {receiver}",
                block.addr()
            );
        }
        if let Some(offset) = block.check_from(HEADER, block.len(), seed) {
            fail!(
                "object {:#x} from cpu {sender} corrupted at byte {offset}",
                block.addr()
            );
        }
        Ok(())
    }

    fn send(mut self, to: usize) {
        let mut inbox = INBOXES[to].lock();
        self.0.write_word(0, inbox.head as u64);
        inbox.head = self.0.into_raw().as_ptr() as usize;
    }

    /// Takes the first message out of `inbox`.
    fn receive(inbox: &mut Inbox) -> Option<Message> {
        let ptr = NonNull::new(inbox.head as *mut u8)?;
        // SAFETY: every object on an inbox was pushed by `send`, which wrote
        // its header (next at 0, size at 8) before publishing it under the
        // lock we hold; the object stays allocated until taken off here.
        let (next, size) = unsafe {
            let words = ptr.as_ptr().cast::<u64>();
            (words.read_unaligned(), words.add(1).read_unaligned())
        };
        inbox.head = next as usize;
        let layout = Layout::from_size_align(size as usize, 8).ok()?;
        // SAFETY: the object came from `Block::into_raw` of a block allocated
        // with exactly this layout (size from its header, align 8), and it
        // was just unlinked, so it is taken back only once.
        Some(Message(unsafe { Block::from_raw(ptr, layout) }))
    }
}

/// Checks and frees every message in this CPU's inbox.
fn drain(cpu: usize) -> Result<usize, Note> {
    let mut received = 0;
    loop {
        // Hold the lock only to unlink: senders are not kept waiting while
        // the message is checked and freed.
        let message = Message::receive(&mut INBOXES[cpu].lock());
        let Some(message) = message else { break };
        message.check(cpu)?;
        drop(message);
        received += 1;
    }
    RECEIVED.fetch_add(received, Ordering::Relaxed);
    Ok(received)
}

pub fn run<M: Machine>(ctx: &Ctx<'_, M>) -> TestResult {
    if ctx.cpus < 2 {
        return skipped!("needs two CPUs");
    }
    let mut rng = Rng::new(ctx.cpu, 2);
    let mut sent = 0;
    let mut received = 0;
    let mut failure = None;
    for _ in 0..ROUNDS {
        for _ in 0..BATCH {
            let size = rng.object_size().max(HEADER + 8);
            let Some(message) = Message::new(size, ctx.cpu, rng.next_u64()) else {
                failure = Some(crate::note::note!("alloc({size}) returned null"));
                break;
            };
            let to = (ctx.cpu + 1 + rng.below(ctx.cpus - 1)) % ctx.cpus;
            message.send(to);
            sent += 1;
        }
        match drain(ctx.cpu) {
            Ok(count) => received += count,
            Err(reason) => {
                failure = Some(reason);
                break;
            }
        }
        if failure.is_some() {
            break;
        }
    }
    SENT.fetch_add(sent, Ordering::Relaxed);
    // Even after a failure every CPU must pass both barriers, or the
    // others would wait for it until their watchdog fires.
    ctx.barrier()?;
    let last = drain(ctx.cpu);
    ctx.barrier()?;
    if let Some(reason) = failure {
        return Err(reason);
    }
    received += last?;
    let (all_sent, all_received) = (
        SENT.load(Ordering::Relaxed),
        RECEIVED.load(Ordering::Relaxed),
    );
    if all_sent != all_received {
        fail!("{all_sent} objects sent, {all_received} received");
    }
    passed!("sent {sent}, received and freed {received} (all CPUs: {all_sent})")
}
