//! A hashed timer wheel (Varghese & Lauck, "Hashed and Hierarchical Timing
//! Wheels", scheme 6).
//!
//! The broker keeps one timer per connection or more (keepalive, connect
//! timeout, retries), and resets most of them on every packet, so insert and
//! cancel must be O(1): a binary heap makes cancel O(n) or leaves dead entries
//! behind. The wheel hashes each deadline to a slot by its tick, `tick` wide;
//! a deadline further out than one turn of the wheel shares its slot with
//! nearer ones and waits for later turns. Each sweep of a slot fires the
//! entries whose deadline has passed and leaves the others, which is how a
//! timer counts its remaining rounds without a counter to decrement.
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
/// connect timeouts and short retries fit in one turn, so their slot holds
/// only them, while keepalives of a minute or more wait a dozen turns in a
/// slot shared evenly with the others. It costs 12 KiB, and recomputing the
/// earliest deadline after a sweep reads 512 slot headers, well under a
/// microsecond.
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
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const MS: Duration = Duration::from_millis(1);

    fn drain<T>(wheel: &mut TimerWheel<T>, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        wheel.expire(now, &mut out);
        out
    }

    #[test]
    fn timers_fire_in_deadline_order_ties_in_insertion_order() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        wheel.insert(t0 + 30 * MS, "c");
        wheel.insert(t0 + 10 * MS, "a1");
        wheel.insert(t0 + 7 * Duration::from_secs(1), "far");
        wheel.insert(t0 + 10 * MS, "a2");
        wheel.insert(t0 + 15 * MS, "b");
        wheel.insert(t0 + 10 * MS, "a3");
        // 5.12 s later: the same slot as `c`, one turn on.
        wheel.insert(t0 + 30 * MS + 5120 * MS, "c-next-turn");
        assert_eq!(
            drain(&mut wheel, t0 + 30 * MS),
            ["a1", "a2", "a3", "b", "c"]
        );
        assert_eq!(drain(&mut wheel, t0 + 5 * Duration::from_secs(1)), [""; 0]);
        let mut out = vec!["kept"];
        wheel.expire(t0 + 10 * Duration::from_secs(1), &mut out);
        assert_eq!(out, ["kept", "c-next-turn", "far"]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn nothing_fires_before_its_deadline() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        // Deadlines on, just before and just after tick boundaries.
        let offsets = [0u64, 1, 9_999_999, 10_000_000, 10_000_001, 25_000_000];
        for &ns in &offsets {
            let deadline = t0 + Duration::from_nanos(ns) + 40 * MS;
            let id = wheel.insert(deadline, ns);
            assert_eq!(
                drain(&mut wheel, deadline - Duration::from_nanos(1)),
                [0u64; 0]
            );
            assert_eq!(drain(&mut wheel, deadline), [ns]);
            assert_eq!(wheel.cancel(id), None);
        }
    }

    #[test]
    fn an_hour_away_waits_many_turns() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        let hour = Duration::from_secs(3600);
        wheel.insert(t0 + hour, "hour");
        wheel.insert(t0 + hour + MS, "hour+1ms");
        // A wake-up every 700 ms: each turn of 5.12 s passes the slot.
        let mut now = t0;
        while now + 700 * MS < t0 + hour {
            now += 700 * MS;
            assert_eq!(drain(&mut wheel, now), [""; 0], "at {:?}", now - t0);
        }
        assert_eq!(
            drain(&mut wheel, t0 + hour - Duration::from_nanos(1)),
            [""; 0]
        );
        assert_eq!(drain(&mut wheel, t0 + hour), ["hour"]);
        // And once the loop slept the whole hour through.
        let mut wheel = TimerWheel::new(t0);
        wheel.insert(t0 + hour, "hour");
        assert_eq!(drain(&mut wheel, t0 + hour - MS), [""; 0]);
        assert_eq!(drain(&mut wheel, t0 + 2 * hour), ["hour"]);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_expire() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        wheel.insert(t0 + Duration::from_secs(3), "later");
        assert_eq!(drain(&mut wheel, t0 + Duration::from_secs(2)), [""; 0]);
        // Behind both the swept ticks and the wheel's origin.
        wheel.insert(t0 + Duration::from_secs(1), "past");
        wheel.insert(t0, "origin");
        assert_eq!(wheel.next_deadline(), Some(t0));
        assert_eq!(
            drain(&mut wheel, t0 + Duration::from_secs(2)),
            ["origin", "past"]
        );
        assert_eq!(wheel.next_deadline(), Some(t0 + Duration::from_secs(3)));
        let mut late = TimerWheel::new(t0 + Duration::from_secs(10));
        late.insert(t0, 1);
        assert_eq!(drain(&mut late, t0), [1]);
    }

    #[test]
    fn cancel_returns_the_value_once_and_leaves_others_alone() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        let a = wheel.insert(t0 + 10 * MS, "a");
        let b = wheel.insert(t0 + 10 * MS, "b");
        let c = wheel.insert(t0 + 10 * MS, "c");
        let d = wheel.insert(t0 + 20 * MS, "d");
        // b is in the middle of its slot's list; a and c at its ends.
        assert_eq!(wheel.cancel(b), Some("b"));
        assert_eq!(wheel.cancel(b), None);
        assert_eq!(wheel.len(), 3);
        assert_eq!(drain(&mut wheel, t0 + 10 * MS), ["a", "c"]);
        assert_eq!(wheel.cancel(a), None, "a fired");
        assert_eq!(wheel.cancel(c), None, "c fired");
        assert_eq!(wheel.len(), 1);
        assert_eq!(drain(&mut wheel, t0 + 20 * MS), ["d"]);
        assert_eq!(wheel.cancel(d), None);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn a_stale_id_does_not_cancel_the_timer_that_reused_its_key() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        let old = wheel.insert(t0 + 10 * MS, "old");
        assert_eq!(wheel.cancel(old), Some("old"));
        let new = wheel.insert(t0 + 10 * MS, "new");
        assert_eq!(new.key, old.key, "the slab did not reuse the key");
        assert_eq!(wheel.cancel(old), None);
        assert_eq!(wheel.len(), 1);
        // And once the old timer fired rather than was cancelled.
        assert_eq!(drain(&mut wheel, t0 + 10 * MS), ["new"]);
        let newer = wheel.insert(t0 + 20 * MS, "newer");
        assert_eq!(newer.key, new.key, "the slab did not reuse the key");
        assert_eq!(wheel.cancel(new), None);
        assert_eq!(wheel.cancel(newer), Some("newer"));
    }

    #[test]
    fn next_deadline_tracks_inserts_cancels_and_expires() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        assert_eq!(wheel.next_deadline(), None);
        let late = wheel.insert(t0 + Duration::from_secs(60), 60);
        assert_eq!(wheel.next_deadline(), Some(t0 + Duration::from_secs(60)));
        let soon = wheel.insert(t0 + 15 * MS, 0);
        wheel.insert(t0 + 25 * MS, 1);
        assert_eq!(wheel.next_deadline(), Some(t0 + 15 * MS));
        // Cancelling the earliest may leave an early answer, never a late one.
        wheel.cancel(soon);
        assert!(wheel.next_deadline().unwrap() <= t0 + 25 * MS);
        // An expire with nothing due puts it right.
        assert_eq!(drain(&mut wheel, t0 + 20 * MS), [0; 0]);
        assert_eq!(wheel.next_deadline(), Some(t0 + 25 * MS));
        assert_eq!(drain(&mut wheel, t0 + 25 * MS), [1]);
        assert_eq!(wheel.next_deadline(), Some(t0 + Duration::from_secs(60)));
        wheel.cancel(late);
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn a_degenerate_geometry_still_works() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::with_geometry(t0, Duration::ZERO, 0);
        wheel.insert(t0 + 2 * MS, 2);
        wheel.insert(t0 + MS, 1);
        assert_eq!(drain(&mut wheel, t0 + MS), [1]);
        assert_eq!(drain(&mut wheel, t0 + 3 * MS), [2]);
    }

    #[test]
    fn deadlines_before_the_start_count_as_the_start() {
        let t0 = Instant::now();
        let start = t0 + Duration::from_secs(10);
        let mut wheel = TimerWheel::new(start);
        wheel.insert(start + Duration::from_nanos(1), "just after");
        wheel.insert(t0 + Duration::from_secs(5), "5 s before");
        wheel.insert(t0, "10 s before");
        wheel.insert(start, "at the start");
        assert_eq!(wheel.next_deadline(), Some(start));
        // The wheel cannot tell them apart: all due at the start, in
        // insertion order.
        assert_eq!(
            drain(&mut wheel, start),
            ["5 s before", "10 s before", "at the start"]
        );
        assert_eq!(wheel.next_deadline(), Some(start + Duration::from_nanos(1)));
        assert_eq!(
            drain(&mut wheel, start + Duration::from_nanos(1)),
            ["just after"]
        );
        assert!(wheel.is_empty());
    }

    #[test]
    fn deadlines_years_away_fire_on_time() {
        let t0 = Instant::now();
        let year = Duration::from_secs(365 * 24 * 3600);
        let ns = Duration::from_nanos(1);
        let mut wheel = TimerWheel::new(t0);
        wheel.insert(t0 + 100 * year, "100 years");
        wheel.insert(t0 + 3 * year, "3 years");
        wheel.insert(t0 + 3 * year, "3 years, second");
        assert_eq!(wheel.next_deadline(), Some(t0 + 3 * year));
        assert_eq!(drain(&mut wheel, t0 + 3 * year - ns), [""; 0]);
        assert_eq!(
            drain(&mut wheel, t0 + 3 * year),
            ["3 years", "3 years, second"]
        );
        assert_eq!(wheel.next_deadline(), Some(t0 + 100 * year));
        assert_eq!(drain(&mut wheel, t0 + 100 * year - ns), [""; 0]);
        assert_eq!(drain(&mut wheel, t0 + 100 * year), ["100 years"]);
        // The wheel counts no further than 2^64 - 1 ns, about 584 years:
        // later deadlines are taken as that, ties in insertion order.
        let limit = t0 + Duration::from_nanos(u64::MAX);
        wheel.insert(t0 + 1000 * year, "1000 years");
        wheel.insert(t0 + 600 * year, "600 years");
        wheel.insert(limit - ns, "just before the limit");
        assert_eq!(wheel.next_deadline(), Some(limit - ns));
        assert_eq!(drain(&mut wheel, limit - ns), ["just before the limit"]);
        assert_eq!(wheel.next_deadline(), Some(limit));
        assert_eq!(drain(&mut wheel, limit), ["1000 years", "600 years"]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn equal_deadlines_fire_in_insertion_order_whatever_their_keys() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        let ids: Vec<_> = (0..64u32)
            .map(|n| wheel.insert(t0 + Duration::from_secs(60), 1000 + n))
            .collect();
        // Freed keys are reused last freed first: the timers below take
        // keys out of order, then fresh ones.
        for n in [37, 2, 60, 11, 0, 45, 23, 5] {
            assert!(wheel.cancel(ids[n]).is_some());
        }
        let at = t0 + 50 * MS;
        let keys: Vec<u32> = (0..16).map(|n| wheel.insert(at, n).key).collect();
        assert!(keys.windows(2).any(|w| w[0] > w[1]), "keys {keys:?}");
        assert_eq!(drain(&mut wheel, at), (0..16).collect::<Vec<_>>());
        assert_eq!(wheel.len(), 56);
    }

    #[test]
    fn a_stale_id_finds_nothing_however_often_its_key_was_reused() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        let at = |n: u64| t0 + Duration::from_millis(10 * (n + 1));
        let first = wheel.insert(at(0), 0);
        let mut stale = Vec::new();
        let mut live = first;
        for n in 1..100u64 {
            // Cancelled and fired in turn: both free the key.
            if n % 2 == 0 {
                assert_eq!(wheel.cancel(live), Some(n - 1));
            } else {
                assert_eq!(drain(&mut wheel, at(n - 1)), [n - 1]);
            }
            stale.push(live);
            live = wheel.insert(at(n), n);
            assert_eq!(live.key, first.key, "the slab did not reuse the key");
            for &old in &stale {
                assert_eq!(wheel.cancel(old), None);
            }
            assert_eq!(wheel.len(), 1);
        }
        assert_eq!(wheel.cancel(live), Some(99));
    }

    #[test]
    fn timers_past_the_key_limit_spill_and_keep_every_promise() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0);
        wheel.key_limit = 2;
        let a = wheel.insert(t0 + 30 * MS, "a");
        wheel.insert(t0 + 20 * MS, "b");
        let c = wheel.insert(t0 + 10 * MS, "c");
        let d = wheel.insert(t0 + 20 * MS, "d");
        let e = wheel.insert(t0 + 40 * MS, "e");
        assert_eq!((a.key, c.key, d.key), (0, NIL, NIL), "c, d, e spilled");
        assert_eq!(wheel.len(), 5);
        assert_eq!(wheel.next_deadline(), Some(t0 + 10 * MS));
        assert_eq!(drain(&mut wheel, t0 + 10 * MS - MS), [""; 0]);
        // Spilled or not, in deadline order, ties in insertion order.
        assert_eq!(drain(&mut wheel, t0 + 20 * MS), ["c", "b", "d"]);
        // A spilled id is as safe as any: once gone, it cancels nothing,
        // not even the spilled timer inserted after it.
        assert_eq!(wheel.cancel(c), None);
        let f = wheel.insert(t0 + 50 * MS, "f");
        let g = wheel.insert(t0 + 50 * MS, "g");
        assert_eq!((f.key, g.key), (1, NIL));
        assert_eq!(wheel.cancel(d), None);
        assert_eq!(wheel.cancel(e), Some("e"));
        assert_eq!(wheel.cancel(e), None);
        assert_eq!(wheel.len(), 3);
        assert_eq!(drain(&mut wheel, t0 + 60 * MS), ["a", "f", "g"]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    /// The shape of the broker's `Timer`: a tag and a connection id of a
    /// `usize` and a `u64`.
    #[allow(dead_code)]
    enum BrokerLike {
        ConnectTimeout(usize, u64),
        Keepalive(usize, u64),
        Stats,
        Memory,
        Retry(usize, u64),
    }

    /// What a `Slab<E>` stores per key: slab 0.4's own enum, copied (it is
    /// private to the crate), so that its tag is counted too.
    #[allow(dead_code)]
    enum SlabEntry<E> {
        Vacant(usize),
        Occupied(E),
    }

    #[test]
    fn a_pending_timer_costs_24_bytes_besides_its_value() {
        use std::mem::size_of;
        // Bounds, not equalities: a 32-bit target may do better.
        assert!(size_of::<BrokerLike>() <= 24);
        assert!(size_of::<Entry<()>>() <= 24);
        assert!(size_of::<Entry<BrokerLike>>() <= 48);
        // The slab needs no tag of its own: it takes a value the entry
        // never holds (the broker's tag; a zero sequence number).
        assert!(size_of::<SlabEntry<Entry<BrokerLike>>>() <= 48);
        assert!(size_of::<SlabEntry<Entry<u64>>>() <= 32);
        assert!(size_of::<Option<TimerId>>() <= 16);
    }

    /// Walks every slot's list: each entry linked both ways, in the slot
    /// `home` names, counted once; each slot's and the wheel's earliest no
    /// later than what they hold.
    fn check_links<T>(wheel: &TimerWheel<T>) {
        let mut seen = 0;
        for (slot, s) in wheel.slots.iter().enumerate() {
            let (mut prev, mut cursor, mut min) = (NIL, s.head, None);
            while cursor != NIL {
                let entry = &wheel.entries[cursor as usize];
                assert_eq!(entry.prev, prev, "slot {slot}: a broken back link");
                assert_eq!(wheel.home(entry.deadline), slot, "key {cursor}");
                assert!(cursor < wheel.key_limit);
                min = earlier(min, entry.deadline);
                seen += 1;
                assert!(seen <= wheel.entries.len(), "a cycle in slot {slot}");
                (prev, cursor) = (cursor, entry.next);
            }
            if let Some(min) = min {
                assert!(s.earliest.is_some_and(|e| e <= min), "slot {slot}");
            }
        }
        assert_eq!(seen, wheel.entries.len());
        let spilled = wheel.spilled.iter().map(|s| s.deadline);
        if let Some(min) = wheel
            .entries
            .iter()
            .map(|(_, e)| e.deadline)
            .chain(spilled)
            .min()
        {
            assert!(wheel.earliest.is_some_and(|e| e <= min));
        }
    }

    /// A xorshift64 generator: reproducible randomness without a crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random inserts, cancels of live and stale ids, and expires at random
    /// times, mostly increasing, checked against a sorted map of what must be
    /// pending, and the wheel's links checked after every step. Slab keys
    /// from `key_limit` up are refused, so a low limit drives timers into
    /// `spilled`.
    fn model_test(seed: u64, tick: Duration, slots: usize, key_limit: u32) {
        let mut rng = XorShift(seed);
        let t0 = Instant::now();
        let turn = tick * slots as u32;
        let turn_ns = turn.as_nanos() as u64;
        let mut wheel = TimerWheel::with_geometry(t0, tick, slots);
        wheel.key_limit = key_limit;
        let mut model: BTreeMap<(Instant, u64), u64> = BTreeMap::new();
        let mut ids: Vec<(TimerId, Instant, u64)> = Vec::new();
        let mut now = t0;
        let mut fired = 0;
        let mut most_spilled = 0;
        for round in 0..20_000u64 {
            match rng.below(10) {
                0..=4 => {
                    let offset = Duration::from_nanos(match rng.below(4) {
                        0 => rng.below(3 * tick.as_nanos() as u64),
                        1 => rng.below(2 * turn_ns),
                        _ => rng.below(20 * turn_ns),
                    });
                    let deadline = if rng.below(8) == 0 {
                        now.checked_sub(offset).unwrap_or(now)
                    } else {
                        now + offset
                    };
                    let id = wheel.insert(deadline, round);
                    // The wheel counts from its start: anything earlier is
                    // due at the start, with ties in insertion order.
                    let deadline = deadline.max(t0);
                    model.insert((deadline, round), round);
                    ids.push((id, deadline, round));
                }
                5..=6 => {
                    if let Some(&(id, deadline, seq)) =
                        ids.get(rng.below(ids.len() as u64 + 1) as usize)
                    {
                        assert_eq!(wheel.cancel(id), model.remove(&(deadline, seq)));
                    }
                }
                _ => {
                    let step = match rng.below(4) {
                        0 => 0,
                        1 => rng.below(tick.as_nanos() as u64),
                        2 => rng.below(turn_ns),
                        _ => rng.below(3 * turn_ns),
                    };
                    // Now and then an expire at an earlier instant than the
                    // last: nothing new is due, and nothing may move.
                    let at = if rng.below(16) == 0 {
                        now.checked_sub(Duration::from_nanos(step))
                            .unwrap_or(now)
                            .max(t0)
                    } else {
                        now += Duration::from_nanos(step);
                        now
                    };
                    let mut out = Vec::new();
                    wheel.expire(at, &mut out);
                    let pending = model.split_off(&(at, u64::MAX));
                    let due: Vec<u64> = std::mem::replace(&mut model, pending)
                        .into_values()
                        .collect();
                    assert_eq!(out, due, "round {round}");
                    fired += out.len();
                    // No early wake-up loop: what is left is due later.
                    assert!(wheel.next_deadline().map_or(true, |d| d > at));
                }
            }
            assert_eq!(wheel.len(), model.len(), "round {round}");
            check_links(&wheel);
            most_spilled = most_spilled.max(wheel.spilled.len());
            match model.keys().next() {
                None => assert_eq!(wheel.next_deadline(), None),
                Some(&(first, _)) => {
                    let next = wheel.next_deadline().expect("a timer is pending");
                    assert!(next <= first, "round {round}: next_deadline is late");
                }
            }
        }
        assert!(fired > 1000, "only {fired} timers fired");
        if key_limit < NIL {
            assert!(most_spilled > 10, "at most {most_spilled} spilled");
        }
        let mut out = Vec::new();
        wheel.expire(now + 100 * turn, &mut out);
        assert_eq!(out, model.into_values().collect::<Vec<_>>());
        assert!(wheel.is_empty());
    }

    #[test]
    fn model_test_default_geometry() {
        model_test(0x5EED, DEFAULT_TICK, DEFAULT_SLOTS, NIL);
    }

    #[test]
    fn model_test_small_wheel_many_rounds() {
        model_test(0xC0FFEE, MS, 8, NIL);
    }

    #[test]
    fn model_test_one_slot() {
        model_test(42, Duration::from_micros(1), 1, NIL);
    }

    #[test]
    fn model_test_with_most_timers_spilled() {
        model_test(0xBAD5EED, MS, 8, 16);
    }
}
