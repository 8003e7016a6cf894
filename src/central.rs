//! Central lists: one per size class, the shared pool behind the CPU caches.
//!
//! # What it owns
//!
//! Every span of its class. Spans with at least one free object sit on a
//! doubly linked list (through the head page's `PageMeta.a/.b`); full spans
//! are on no list and come back to it when an object returns. The list
//! prefers partly used spans: a span that gets an object back after being
//! full goes to the front, an empty span to the back, so allocation fills
//! the fullest spans first and nearly empty ones drain (TCMalloc's policy).
//!
//! Objects move to and from the per-CPU caches in batches
//! ([`take`](CentralList::take), [`give`](CentralList::give)): the lock is
//! taken once per batch, not once per object.
//!
//! # Fallback spans
//!
//! A new span has the class's own geometry when the page heap has a free
//! block of that order; otherwise it gets the class's fallback geometry,
//! the smallest span that holds one object (see `size_class`). A list may
//! hold spans of both kinds; each span's tags say which it is.
//!
//! # Empty spans
//!
//! A span whose last object returns is kept, up to [`reserve`] empty spans
//! per class, so a workload that oscillates around a span boundary does not
//! bounce pages to and from the page heap (SLUB's `min_partial`). Beyond
//! that, and on [`reclaim`](CentralList::reclaim), empty spans go back to
//! the page heap at once. An empty fallback span always goes back, so that
//! the class returns to its own spans once the heap has larger blocks again.
//!
//! # Locking
//!
//! One spin lock per class, always taken with interrupts masked (an
//! [`IrqOff`] token). The page heap's lock nests inside it; nothing takes a
//! central lock while holding the page heap's.

use crate::addr::VirtAddr;
use crate::buddy::{kind, PageHeap, PageId};
use crate::debug;
use crate::platform::IrqOff;
use crate::size_class::SizeClass;
use crate::span::{self, Span};
use crate::sync::IrqLock;
use core::sync::atomic::Ordering;

const R: Ordering = Ordering::Relaxed;

/// Empty spans kept per class: two for one-page spans, one for larger
/// spans (whose pages are worth more to the rest of the heap).
pub(crate) fn reserve(class: SizeClass) -> u32 {
    if class.info().span_order == 0 {
        2
    } else {
        1
    }
}

struct Lists {
    head: PageId,
    tail: PageId,
    /// Spans of this class, on the list or full.
    spans: u32,
    /// Their pages.
    pages: u64,
    /// Empty spans on the list.
    empty: u32,
    /// Objects out of spans (in CPU caches or with users).
    out: u64,
}

/// Counters of one class, for [`HeapStats`](crate::HeapStats).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Spans of this class.
    pub spans: u32,
    /// Pages held by those spans (spans made as fallbacks are smaller than
    /// the class's own).
    pub span_pages: u64,
    /// Of which empty (kept in reserve).
    pub empty_spans: u32,
    /// Objects out of spans: in CPU caches or in use.
    pub objects_out: u64,
}

/// The central list of one size class; see the [module docs](self).
///
/// Aligned to two cache lines so that CPUs working on neighbouring classes
/// do not share (and bounce) a line.
#[repr(align(128))]
pub(crate) struct CentralList {
    lists: IrqLock<Lists>,
}

impl CentralList {
    pub(crate) const fn new() -> Self {
        CentralList {
            lists: IrqLock::new(Lists {
                head: PageId::NIL,
                tail: PageId::NIL,
                spans: 0,
                pages: 0,
                empty: 0,
                out: 0,
            }),
        }
    }

    /// Moves up to `out.len()` objects of `class` into `out`, making spans
    /// from the page heap as needed. Returns how many; 0 means out of memory.
    ///
    /// # Time Complexity
    /// O(out.len()), plus one page heap allocation per new span.
    pub(crate) fn take(
        &self,
        irq: IrqOff<'_>,
        pages: &PageHeap,
        class: SizeClass,
        out: &mut [VirtAddr],
        poison: bool,
    ) -> usize {
        let offset = pages.offset();
        let mut l = self.lists.lock(irq);
        let mut n = 0;
        while n < out.len() {
            let span = if l.head.is_nil() {
                let Some(span) = Self::make_span(irq, pages, class) else {
                    break;
                };
                if poison {
                    let bytes = span.info().span_bytes();
                    // SAFETY: the span's pages are fresh from the page heap
                    // and hold no object yet.
                    unsafe { debug::fill(span.base(offset), bytes, debug::POISON_FREE) };
                }
                l.spans += 1;
                l.pages += span.pages();
                l.empty += 1;
                Self::link_front(&mut l, pages, span);
                span
            } else {
                let (region, index) = pages.by_id(l.head);
                Span { region, index }
            };
            if span.inuse() == 0 {
                l.empty -= 1;
            }
            let info = span.info();
            n += span.pop_into(offset, info, &mut out[n..]);
            if span.inuse() == info.objects {
                Self::unlink(&mut l, pages, span);
            }
        }
        l.out += n as u64;
        n
    }

    /// A new empty span of `class` from the page heap: of the class's own
    /// geometry if a block of its order is free, else of its fallback.
    fn make_span<'p>(irq: IrqOff<'_>, pages: &'p PageHeap, class: SizeClass) -> Option<Span<'p>> {
        let own = class.info().span_order;
        if let Some(run) = pages.alloc(irq, 1 << own, 0, None, kind::SPAN_HEAD) {
            return Some(Span::init(run, class, false));
        }
        let fallback = class.fallback().span_order;
        if fallback == own {
            return None;
        }
        let run = pages.alloc(irq, 1 << fallback, 0, None, kind::SPAN_HEAD)?;
        Some(Span::init(run, class, true))
    }

    /// Returns objects of `class` to their spans. Each was validated as an
    /// object of this class when it was freed; it is checked again here,
    /// against the span it lands in.
    ///
    /// Each object costs one span lookup and one update of its span's
    /// head; moving a span between lists (it was full, or it is now empty)
    /// is out of line. Skipping the lookup for runs of one span's objects
    /// (a batch freed in address order is made of such runs) took a third
    /// off the instructions of a one-CPU batch, but a producer on one CPU
    /// and a consumer on another (the benchmark's `prodcons`) then moved
    /// about 40 % fewer objects per second. The producer's time went to its
    /// cache claim, a locked instruction that waits for the producer's
    /// pending writes to the objects it had just taken; the likely cause is
    /// the consumer writing free-list links into dozens of object lines in
    /// a burst. So objects go back one at a time.
    ///
    /// # Time Complexity
    /// O(objs.len() × regions), plus one page heap free per span released.
    pub(crate) fn give(
        &self,
        irq: IrqOff<'_>,
        pages: &PageHeap,
        class: SizeClass,
        objs: &[VirtAddr],
    ) {
        let info = class.info();
        let keep = reserve(class);
        let mut l = self.lists.lock(irq);
        for &obj in objs {
            let Some((span, index)) = Span::locate_own(pages, obj, class) else {
                Self::give_other(&mut l, irq, pages, class, obj, keep);
                continue;
            };
            let (was_full, empty) = span.push(info, obj, index);
            if was_full || empty {
                Self::relist(&mut l, irq, pages, span, was_full, empty, keep);
            }
        }
        l.out -= objs.len() as u64;
    }

    /// [`give`](Self::give) of an object that is not in a span of the
    /// class's own geometry: in a fallback span, or no longer valid. It
    /// pushes the object itself rather than return the span to `give`:
    /// merging the two paths' span and geometry into `give`'s loop cost
    /// 64 B flushes about 5 instructions per object.
    #[cold]
    #[inline(never)]
    fn give_other(
        l: &mut Lists,
        irq: IrqOff<'_>,
        pages: &PageHeap,
        class: SizeClass,
        obj: VirtAddr,
        keep: u32,
    ) {
        let (span, index, info) = match Span::locate(pages, obj, class) {
            Ok(found) => found,
            Err(why) => span::no_longer_valid(obj, why),
        };
        let (was_full, empty) = span.push(info, obj, index);
        if was_full || empty {
            Self::relist(l, irq, pages, span, was_full, empty, keep);
        }
    }

    /// Moves a span that got objects back: to the front if it was full, to
    /// the reserve or back to the page heap if it is now empty (a fallback
    /// span always goes back).
    #[inline(never)]
    fn relist(
        l: &mut Lists,
        irq: IrqOff<'_>,
        pages: &PageHeap,
        span: Span<'_>,
        was_full: bool,
        empty: bool,
        keep: u32,
    ) {
        if was_full {
            Self::link_front(l, pages, span);
        }
        if empty {
            Self::unlink(l, pages, span);
            if l.empty < keep && !span.is_fallback() {
                span.reset();
                l.empty += 1;
                Self::link_back(l, pages, span);
            } else {
                let n = span.pages();
                l.spans -= 1;
                l.pages -= n;
                pages.free(irq, span.retire(), n);
            }
        }
    }

    /// Gives every empty span back to the page heap. Returns the pages freed.
    pub(crate) fn reclaim(&self, irq: IrqOff<'_>, pages: &PageHeap) -> u64 {
        let mut l = self.lists.lock(irq);
        let mut freed = 0;
        let mut cursor = l.head;
        while !cursor.is_nil() {
            let (region, index) = pages.by_id(cursor);
            let span = Span { region, index };
            cursor = PageId(span.head().b.load(R));
            if span.inuse() == 0 {
                let n = span.pages();
                Self::unlink(&mut l, pages, span);
                l.spans -= 1;
                l.pages -= n;
                l.empty -= 1;
                pages.free(irq, span.retire(), n);
                freed += n;
            }
        }
        freed
    }

    /// Whether `obj` (an object of this class) is free in its span: never
    /// handed out, or on the span's free list.
    ///
    /// # Time Complexity
    /// O(objects per span).
    pub(crate) fn is_free(
        &self,
        irq: IrqOff<'_>,
        pages: &PageHeap,
        class: SizeClass,
        obj: VirtAddr,
    ) -> bool {
        let _l = self.lists.lock(irq);
        match Span::locate(pages, obj, class) {
            Ok((span, index, _)) => span.is_free(pages.offset(), index),
            Err(_) => false,
        }
    }

    pub(crate) fn stats(&self, irq: IrqOff<'_>) -> ClassStats {
        let l = self.lists.lock(irq);
        ClassStats {
            spans: l.spans,
            span_pages: l.pages,
            empty_spans: l.empty,
            objects_out: l.out,
        }
    }

    fn link_front(l: &mut Lists, pages: &PageHeap, span: Span<'_>) {
        let id = span.id();
        let head = span.head();
        head.a.store(PageId::NIL.0, R);
        head.b.store(l.head.0, R);
        if l.head.is_nil() {
            l.tail = id;
        } else {
            let (r, i) = pages.by_id(l.head);
            r.meta(i).a.store(id.0, R);
        }
        l.head = id;
    }

    fn link_back(l: &mut Lists, pages: &PageHeap, span: Span<'_>) {
        let id = span.id();
        let head = span.head();
        head.a.store(l.tail.0, R);
        head.b.store(PageId::NIL.0, R);
        if l.tail.is_nil() {
            l.head = id;
        } else {
            let (r, i) = pages.by_id(l.tail);
            r.meta(i).b.store(id.0, R);
        }
        l.tail = id;
    }

    fn unlink(l: &mut Lists, pages: &PageHeap, span: Span<'_>) {
        let head = span.head();
        let (prev, next) = (PageId(head.a.load(R)), PageId(head.b.load(R)));
        if prev.is_nil() {
            l.head = next;
        } else {
            let (r, i) = pages.by_id(prev);
            r.meta(i).b.store(next.0, R);
        }
        if next.is_nil() {
            l.tail = prev;
        } else {
            let (r, i) = pages.by_id(next);
            r.meta(i).a.store(prev.0, R);
        }
        head.a.store(PageId::NIL.0, R);
        head.b.store(PageId::NIL.0, R);
    }
}
