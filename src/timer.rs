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
//! Explained in docs/09-timer-wheel.md.

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
/// slot shared evenly with the others. It costs 16 KiB, and recomputing the
/// earliest deadline after a sweep reads 512 slot headers, well under a
/// microsecond.
pub const DEFAULT_SLOTS: usize = 512;

/// Names a scheduled timer, to cancel it. The slab key is reused once the
/// timer fires or is cancelled; the sequence number is not, so a stale id can
/// never cancel the newer timer that took its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    key: usize,
    seq: u64,
}

/// One pending timer, linked into its slot's list by slab key so that cancel
/// unlinks it in O(1) and frees it at once.
struct Entry<T> {
    value: T,
    deadline: Instant,
    /// Insertion order: the tie-break between equal deadlines, and the
    /// generation that tells a live [`TimerId`] from a stale one.
    seq: u64,
    slot: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    head: Option<usize>,
    /// Never later than the earliest deadline in this slot: exact after a
    /// sweep, lowered by inserts, left alone by cancels.
    earliest: Option<Instant>,
}

/// A hashed timer wheel: slots of `tick` width; a timer further out than one
/// turn waits in its slot for the turns still to come. Pure: `now` is always
/// passed in, it never reads the clock.
pub struct TimerWheel<T> {
    start: Instant,
    /// The slot width in nanoseconds, never zero.
    tick: u128,
    slots: Vec<Slot>,
    entries: Slab<Entry<T>>,
    /// Every tick before this one has been swept, so every pending timer sits
    /// in this tick or a later one.
    current: u64,
    next_seq: u64,
    /// Never later than the earliest pending deadline; `None` when no timer
    /// is pending. Kept so that `next_deadline` costs nothing.
    earliest: Option<Instant>,
    /// Timers fired by the sweep under way, before they are sorted; kept to
    /// reuse its allocation.
    fired: Vec<(Instant, u64, T)>,
}

fn earlier(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
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
            tick: tick.as_nanos().max(1),
            slots: vec![Slot::default(); slots.max(1)],
            entries: Slab::new(),
            current: 0,
            next_seq: 0,
            earliest: None,
            fired: Vec::new(),
        }
    }

    /// Schedules `value` at `deadline`. A deadline already past fires on the
    /// next call to [`TimerWheel::expire`].
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        // A deadline in an already swept tick goes into the current one,
        // which the next sweep visits first.
        let slot = self.slot_of(self.tick_of(deadline).max(self.current));
        let seq = self.next_seq;
        // Wraps after 2^64 timers: centuries at a billion a second.
        self.next_seq = self.next_seq.wrapping_add(1);
        let head = self.slots.get(slot).and_then(|s| s.head);
        let key = self.entries.insert(Entry {
            value,
            deadline,
            seq,
            slot,
            prev: None,
            next: head,
        });
        if let Some(old_head) = head.and_then(|h| self.entries.get_mut(h)) {
            old_head.prev = Some(key);
        }
        if let Some(s) = self.slots.get_mut(slot) {
            s.head = Some(key);
            s.earliest = earlier(s.earliest, deadline);
        }
        self.earliest = earlier(self.earliest, deadline);
        TimerId { key, seq }
    }

    /// Cancels a timer; returns its value if it was still pending, `None` if
    /// it already fired or was cancelled. O(1).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        if self.entries.get(id.key)?.seq != id.seq {
            return None;
        }
        self.unlink(id.key);
        let entry = self.entries.try_remove(id.key)?;
        // The cached earliest deadline stays as it is: it may now be earlier
        // than any pending timer, which costs at most one early wake-up, and
        // keeps cancel from scanning for the new earliest.
        if self.entries.is_empty() {
            self.earliest = None;
        }
        Some(entry.value)
    }

    /// The instant the earliest pending timer is due, or `None`. Never later
    /// than that timer's deadline; after a cancel it may be earlier, and the
    /// next [`TimerWheel::expire`] puts it right. O(1).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.earliest
    }

    /// Moves every timer due at or before `now` into `out`, in deadline
    /// order, ties in insertion order.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<T>) {
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
        // The target tick may still hold timers due later within it; they
        // stay, and the next sweep starts there again.
        self.current = target;
        self.fired
            .sort_unstable_by_key(|&(deadline, seq, _)| (deadline, seq));
        out.extend(self.fired.drain(..).map(|(_, _, value)| value));
        self.earliest = self.slots.iter().filter_map(|s| s.earliest).min();
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Fires the entries of `slot` whose deadline has passed, and records the
    /// earliest deadline of those that stay.
    fn sweep(&mut self, slot: usize, now: Instant) {
        let mut earliest = None;
        let mut cursor = self.slots.get(slot).and_then(|s| s.head);
        while let Some(key) = cursor {
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
        let (prev, next, slot) = (entry.prev, entry.next, entry.slot);
        match prev {
            Some(p) => {
                if let Some(prev) = self.entries.get_mut(p) {
                    prev.next = next;
                }
            }
            None => {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.head = next;
                    if next.is_none() {
                        s.earliest = None;
                    }
                }
            }
        }
        if let Some(next) = next.and_then(|n| self.entries.get_mut(n)) {
            next.prev = prev;
        }
    }

    /// The tick `t` falls in, counted from `start`. An instant before `start`
    /// is in tick 0; one too far out for a `u64` of ticks is in the last.
    fn tick_of(&self, t: Instant) -> u64 {
        let ticks = t.saturating_duration_since(self.start).as_nanos() / self.tick;
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    fn slot_of(&self, tick: u64) -> usize {
        // The remainder is below the slot count, which is a usize.
        (tick % self.slots.len() as u64) as usize
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
    /// increasing times, checked against a sorted map of what must be pending.
    fn model_test(seed: u64, tick: Duration, slots: usize) {
        let mut rng = XorShift(seed);
        let t0 = Instant::now();
        let turn = tick * slots as u32;
        let turn_ns = turn.as_nanos() as u64;
        let mut wheel = TimerWheel::with_geometry(t0, tick, slots);
        let mut model: BTreeMap<(Instant, u64), u64> = BTreeMap::new();
        let mut ids: Vec<(TimerId, Instant, u64)> = Vec::new();
        let mut now = t0;
        let mut fired = 0;
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
                    now += Duration::from_nanos(step);
                    let mut out = Vec::new();
                    wheel.expire(now, &mut out);
                    let pending = model.split_off(&(now, u64::MAX));
                    let due: Vec<u64> = std::mem::replace(&mut model, pending)
                        .into_values()
                        .collect();
                    assert_eq!(out, due, "round {round}");
                    fired += out.len();
                    // No early wake-up loop: what is left is due later.
                    assert!(wheel.next_deadline().map_or(true, |d| d > now));
                }
            }
            assert_eq!(wheel.len(), model.len(), "round {round}");
            match model.keys().next() {
                None => assert_eq!(wheel.next_deadline(), None),
                Some(&(first, _)) => {
                    let next = wheel.next_deadline().expect("a timer is pending");
                    assert!(next <= first, "round {round}: next_deadline is late");
                }
            }
        }
        assert!(fired > 1000, "only {fired} timers fired");
        let mut out = Vec::new();
        wheel.expire(now + 100 * turn, &mut out);
        assert_eq!(out, model.into_values().collect::<Vec<_>>());
        assert!(wheel.is_empty());
    }

    #[test]
    fn model_test_default_geometry() {
        model_test(0x5EED, DEFAULT_TICK, DEFAULT_SLOTS);
    }

    #[test]
    fn model_test_small_wheel_many_rounds() {
        model_test(0xC0FFEE, MS, 8);
    }

    #[test]
    fn model_test_one_slot() {
        model_test(42, Duration::from_micros(1), 1);
    }
}
