//! A hashed timer wheel (Varghese & Lauck, "Hashed and Hierarchical Timing
//! Wheels", scheme 6).
//!
//! The broker keeps at most two timers per connection: the connect timeout,
//! replaced by the keepalive once CONNECT is accepted, and a resend check
//! while QoS 1 or 2 messages are in flight; and two of its own, the
//! `$SOL/broker/` statistics (when enabled) and the memory check. None of
//! them is moved on every packet: the broker only notes when a client was
//! last heard from, and a keepalive that fires for a client heard from since
//! re-arms itself for the remainder. What churns is connections: each one
//! inserts a timer when it opens, cancels it when its CONNECT arrives and
//! again when it closes, and a reconnect storm does that for thousands of
//! clients at once. So insert and cancel must be O(1): a binary heap makes
//! cancel O(n) or leaves dead entries behind. The wheel hashes each deadline
//! to a slot by its tick, `tick` wide; a deadline further out than one turn
//! of the wheel shares its slot with nearer ones and waits for later turns.
//! Each sweep of a slot fires the entries whose deadline has passed and
//! leaves the others, which is how a timer counts its remaining rounds
//! without a counter to decrement.
//!
//! Timers fire exactly when `now` reaches their deadline, never earlier and
//! never later: the tick only decides which slots a sweep must look at.
//!
//! The wheel is pure. It never reads the clock: the caller passes `now` in,
//! which is what makes every timing path testable without sleeping. It knows
//! nothing of what a timer means; that is the value `T` the caller stores.
//!
//! Every idle connection holds a pending timer, so an entry is kept small:
//! 24 bytes besides the value (a deadline and a sequence number of 8 bytes
//! each, two links of 4), where the obvious layout takes 64.
//!
//! Explained in docs/09-timer-wheel.md.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use slab::Slab;

/// The default slot width. MQTT's timeouts are counted in seconds, and the
/// wheel fires on the exact deadline whatever the tick; the width only sets
/// how many slots a sweep visits after the loop slept (one per 10 ms) and how
/// finely timers spread over the slots.
pub const DEFAULT_TICK: Duration = Duration::from_millis(10);

/// The default number of slots. 512 slots of 10 ms make a turn of 5.12 s:
/// the memory check (every second) fits in one turn, a connect timeout
/// (10 s by default) waits one turn more in its slot, a resend check (20 s)
/// three, the keepalive check of a client with a keepalive of a minute
/// (90 s) seventeen, in slots shared evenly with the others. A timer that
/// waits costs a comparison each time its slot is swept. The slots take
/// 12 KiB, and recomputing the earliest deadline after a sweep reads 512
/// slot headers, well under a microsecond.
pub const DEFAULT_SLOTS: usize = 512;

/// The link that leads nowhere: no previous entry, no next one, an empty
/// slot. Slab keys stay below it, so links fit in 4 bytes instead of the 16
/// of an `Option<usize>`.
const NIL: u32 = u32::MAX;

/// Names a scheduled timer, to cancel it. The slab key is reused once the
/// timer fires or is cancelled; the sequence number is not, so a stale id can
/// never cancel the newer timer that took its key. 16 bytes, and so is an
/// `Option<TimerId>`: the sequence number is never zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    /// The slab key, or [`NIL`] for a timer kept in `TimerWheel::spilled`.
    key: u32,
    seq: NonZeroU64,
}

/// One pending timer, linked into its slot's list by slab key so that cancel
/// unlinks it in O(1) and frees it at once.
///
/// Which slot's list holds it is not stored: it is always
/// [`TimerWheel::home`] of its deadline. A timer is filed under its deadline's
/// tick, or under the current tick if that one was already swept, and
/// `current` never moves past a tick while a timer due in it is pending.
struct Entry<T> {
    value: T,
    /// Nanoseconds since the wheel's start (see [`TimerWheel::nanos_of`]).
    deadline: u64,
    /// Insertion order: the tie-break between equal deadlines, and the
    /// generation that tells a live [`TimerId`] from a stale one.
    seq: NonZeroU64,
    /// Slab keys, or [`NIL`].
    prev: u32,
    next: u32,
}

/// A timer that got no slab key of its own: see `TimerWheel::spilled`.
struct Spilled<T> {
    value: T,
    deadline: u64,
    seq: NonZeroU64,
}

#[derive(Clone, Copy)]
struct Slot {
    /// The first entry's slab key, or [`NIL`].
    head: u32,
    /// Never later than the earliest deadline in this slot: exact after a
    /// sweep, lowered by inserts, left alone by cancels.
    earliest: Option<u64>,
}

const EMPTY_SLOT: Slot = Slot {
    head: NIL,
    earliest: None,
};

/// A hashed timer wheel: slots of `tick` width; a timer further out than one
/// turn waits in its slot for the turns still to come. Pure: `now` is always
/// passed in, it never reads the clock.
pub struct TimerWheel<T> {
    /// The time origin: every instant is kept as the nanoseconds since it.
    start: Instant,
    /// The slot width in nanoseconds, never zero.
    tick: u64,
    slots: Vec<Slot>,
    entries: Slab<Entry<T>>,
    /// Slab keys must stay below this to fit a link: [`NIL`], except in the
    /// tests, which lower it to reach `spilled`.
    key_limit: u32,
    /// Timers inserted while every key below `key_limit` was taken (four
    /// billion pending timers, far more than memory holds). Scanned in full by
    /// `expire` and `cancel`: slow, but exact and without a panic; empty
    /// in any real run.
    spilled: Vec<Spilled<T>>,
    /// Every tick before this one has been swept, so every pending timer sits
    /// in this tick or a later one.
    current: u64,
    next_seq: NonZeroU64,
    /// Never later than the earliest pending deadline; `None` when no timer
    /// is pending. Kept so that `next_deadline` costs nothing.
    earliest: Option<u64>,
    /// Timers fired by the sweep under way, before they are sorted; kept to
    /// reuse its allocation.
    fired: Vec<(u64, NonZeroU64, T)>,
}

fn earlier(a: Option<u64>, b: u64) -> Option<u64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// The slab key a link names, or `None` for [`NIL`].
fn key_of(link: u32) -> Option<usize> {
    if link == NIL {
        None
    } else {
        usize::try_from(link).ok()
    }
}

impl<T> TimerWheel<T> {
    /// A wheel of [`DEFAULT_SLOTS`] slots of [`DEFAULT_TICK`] whose time
    /// origin is `start`.
    pub fn new(start: Instant) -> Self {
        Self::with_geometry(start, DEFAULT_TICK, DEFAULT_SLOTS)
    }

    /// A wheel of `slots` slots of `tick` width. A zero tick is taken as one
    /// nanosecond and zero slots as one, rather than dividing by zero.
    pub fn with_geometry(start: Instant, tick: Duration, slots: usize) -> Self {
        TimerWheel {
            start,
            tick: u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1),
            slots: vec![EMPTY_SLOT; slots.max(1)],
            entries: Slab::new(),
            key_limit: NIL,
            spilled: Vec::new(),
            current: 0,
            next_seq: NonZeroU64::MIN,
            earliest: None,
            fired: Vec::new(),
        }
    }

    /// Schedules `value` at `deadline`. A deadline already past fires on the
    /// next call to [`TimerWheel::expire`].
    ///
    /// The wheel counts time in nanoseconds from its start: a deadline before
    /// the start is taken as the start, and one more than 584 years after it
    /// (2^64 ns) as 584 years. Deadlines made equal that way fire in
    /// insertion order.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let deadline = self.nanos_of(deadline);
        let seq = self.next_seq;
        // Wraps after 2^64 timers: centuries at a billion a second.
        self.next_seq = seq.checked_add(1).unwrap_or(NonZeroU64::MIN);
        self.earliest = earlier(self.earliest, deadline);
        // A deadline in an already swept tick goes into the current one,
        // which the next sweep visits first.
        let slot = self.home(deadline);
        let head = self.slots.get(slot).map_or(NIL, |s| s.head);
        let vacant = self.entries.vacant_entry();
        let Some(key) = u32::try_from(vacant.key())
            .ok()
            .filter(|&key| key < self.key_limit)
        else {
            self.spilled.push(Spilled {
                value,
                deadline,
                seq,
            });
            return TimerId { key: NIL, seq };
        };
        vacant.insert(Entry {
            value,
            deadline,
            seq,
            prev: NIL,
            next: head,
        });
        if let Some(old_head) = key_of(head).and_then(|h| self.entries.get_mut(h)) {
            old_head.prev = key;
        }
        if let Some(s) = self.slots.get_mut(slot) {
            s.head = key;
            s.earliest = earlier(s.earliest, deadline);
        }
        TimerId { key, seq }
    }

    /// Cancels a timer; returns its value if it was still pending, `None` if
    /// it already fired or was cancelled. O(1) (a scan for a spilled timer,
    /// which only a wheel of four billion timers has).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let value = match key_of(id.key) {
            None => self.cancel_spilled(id.seq)?,
            Some(key) => {
                if self.entries.get(key)?.seq != id.seq {
                    return None;
                }
                self.unlink(key);
                self.entries.try_remove(key)?.value
            }
        };
        // The cached earliest deadline stays as it is: it may now be earlier
        // than any pending timer, which costs at most one early wake-up, and
        // keeps cancel from scanning for the new earliest.
        if self.is_empty() {
            self.earliest = None;
        }
        Some(value)
    }

    /// The instant the earliest pending timer is due, or `None`. Never later
    /// than that timer's deadline; after a cancel it may be earlier, and the
    /// next [`TimerWheel::expire`] puts it right. O(1).
    ///
    /// `None` too if that instant cannot be represented: no `now` can reach
    /// it either.
    pub fn next_deadline(&self) -> Option<Instant> {
        let nanos = self.earliest?;
        self.start.checked_add(Duration::from_nanos(nanos))
    }

    /// Moves every timer due at or before `now` into `out`, in deadline
    /// order, ties in insertion order.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<T>) {
        let now = self.nanos_of(now);
        // The common case, nothing due, costs one comparison.
        if !self.earliest.is_some_and(|e| e <= now) {
            return;
        }
        let target = self.tick_of(now).max(self.current);
        let slots = self.slots.len();
        let span = target - self.current;
        if span >= slots as u64 {
            // The loop slept a whole turn or more: each slot once is enough.
            for slot in 0..slots {
                self.sweep(slot, now);
            }
        } else {
            for tick in self.current..=target {
                self.sweep(self.slot_of(tick), now);
            }
        }
        if !self.spilled.is_empty() {
            self.expire_spilled(now);
        }
        // The target tick may still hold timers due later within it; they
        // stay, and the next sweep starts there again.
        self.current = target;
        self.fired
            .sort_unstable_by_key(|&(deadline, seq, _)| (deadline, seq));
        out.extend(self.fired.drain(..).map(|(_, _, value)| value));
        let spilled = self.spilled.iter().map(|s| s.deadline).min();
        self.earliest = self
            .slots
            .iter()
            .filter_map(|s| s.earliest)
            .chain(spilled)
            .min();
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.entries.len() + self.spilled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.spilled.is_empty()
    }

    /// Fires the entries of `slot` whose deadline has passed, and records the
    /// earliest deadline of those that stay.
    fn sweep(&mut self, slot: usize, now: u64) {
        let mut earliest = None;
        let mut cursor = self.slots.get(slot).map_or(NIL, |s| s.head);
        while let Some(key) = key_of(cursor) {
            let Some(entry) = self.entries.get(key) else {
                break;
            };
            cursor = entry.next;
            if entry.deadline > now {
                earliest = earlier(earliest, entry.deadline);
                continue;
            }
            self.unlink(key);
            if let Some(entry) = self.entries.try_remove(key) {
                self.fired.push((entry.deadline, entry.seq, entry.value));
            }
        }
        if let Some(s) = self.slots.get_mut(slot) {
            s.earliest = earliest;
        }
    }

    /// Takes an entry out of its slot's list; the entry itself stays in the
    /// slab for the caller to remove.
    fn unlink(&mut self, key: usize) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let (prev, next) = (entry.prev, entry.next);
        let slot = self.home(entry.deadline);
        match key_of(prev) {
            Some(p) => {
                if let Some(prev) = self.entries.get_mut(p) {
                    prev.next = next;
                }
            }
            None => {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.head = next;
                    if next == NIL {
                        s.earliest = None;
                    }
                }
            }
        }
        if let Some(next) = key_of(next).and_then(|n| self.entries.get_mut(n)) {
            next.prev = prev;
        }
    }

    /// Takes out a timer of `spilled`, in a scan: only a wheel holding four
    /// billion timers has any.
    fn cancel_spilled(&mut self, seq: NonZeroU64) -> Option<T> {
        let at = self.spilled.iter().position(|s| s.seq == seq)?;
        // `at` came from `position`: in bounds.
        Some(self.spilled.swap_remove(at).value)
    }

    /// Moves the timers of `spilled` due at or before `now` to `fired`.
    fn expire_spilled(&mut self, now: u64) {
        let mut at = 0;
        while let Some(timer) = self.spilled.get(at) {
            if timer.deadline <= now {
                // `get(at)` just found it: in bounds.
                let timer = self.spilled.swap_remove(at);
                self.fired.push((timer.deadline, timer.seq, timer.value));
            } else {
                at += 1;
            }
        }
    }

    /// `t` as nanoseconds since `start`: 0 for an instant before `start`,
    /// `u64::MAX` for one more than 584 years after it.
    fn nanos_of(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// The tick a deadline falls in, counted from `start`.
    fn tick_of(&self, nanos: u64) -> u64 {
        nanos / self.tick
    }

    fn slot_of(&self, tick: u64) -> usize {
        // The remainder is below the slot count, which is a usize.
        (tick % self.slots.len() as u64) as usize
    }

    /// The slot whose list holds a pending timer due at `deadline`: its own
    /// tick's, or the current tick's if its own was swept already. Valid for
    /// as long as the timer is pending, since `current` only passes a tick
    /// once nothing due in it is left.
    fn home(&self, deadline: u64) -> usize {
        self.slot_of(self.tick_of(deadline).max(self.current))
    }
}

#[cfg(test)]
mod tests;
