use super::*;
use crate::test_rng::XorShift;
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
        match rng.below_u64(10) {
            0..=4 => {
                let offset = Duration::from_nanos(match rng.below_u64(4) {
                    0 => rng.below_u64(3 * tick.as_nanos() as u64),
                    1 => rng.below_u64(2 * turn_ns),
                    _ => rng.below_u64(20 * turn_ns),
                });
                let deadline = if rng.below_u64(8) == 0 {
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
                if let Some(&(id, deadline, seq)) = ids.get(rng.below(ids.len() + 1)) {
                    assert_eq!(wheel.cancel(id), model.remove(&(deadline, seq)));
                }
            }
            _ => {
                let step = match rng.below_u64(4) {
                    0 => 0,
                    1 => rng.below_u64(tick.as_nanos() as u64),
                    2 => rng.below_u64(turn_ns),
                    _ => rng.below_u64(3 * turn_ns),
                };
                // Now and then an expire at an earlier instant than the
                // last: nothing new is due, and nothing may move.
                let at = if rng.below_u64(16) == 0 {
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
