//! Housekeeping seen from clients: the `$SOL/broker/` statistics,
//! `max_connections`, `max_keepalive`, resending overdue messages and
//! `max_memory` under a flood.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

const SECOND: Duration = Duration::from_secs(1);

/// Reads `$SOL/broker/...` PUBLISHes into `seen` (leaf -> payload) until
/// `done` says so; panics after `limit`.
fn read_stats_until(
    raw: &mut Raw,
    seen: &mut HashMap<String, String>,
    limit: Duration,
    done: impl Fn(&HashMap<String, String>) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(seen) {
        assert!(Instant::now() < deadline, "gave up waiting; saw {seen:?}");
        let got = raw.expect_publish();
        let topic = String::from_utf8(got.topic).unwrap();
        if let Some(leaf) = topic.strip_prefix("$SOL/broker/") {
            seen.insert(leaf.to_string(), String::from_utf8(got.payload).unwrap());
        }
    }
}

fn number(seen: &HashMap<String, String>, leaf: &str) -> u64 {
    seen.get(leaf)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{leaf} is not a whole number in {seen:?}"))
}

// ---------------------------------------------------------------------------
// $SOL statistics
// ---------------------------------------------------------------------------

#[test]
fn sol_statistics_are_retained_and_follow_what_happens() {
    let Some(broker) = TestBroker::with(|c| c.stats_publish_interval = SECOND) else {
        return;
    };
    let mut watcher = Raw::connected_clean(broker.addr(), &unique_id("watch"));
    watcher.subscribe(1, &[("$SOL/broker/#", 0)], &[0]);
    // The retained values come at once, one per statistic.
    let mut seen = HashMap::new();
    read_stats_until(&mut watcher, &mut seen, TIMEOUT, |s| s.len() >= 29);
    assert_eq!(
        seen["version"],
        format!("sol {}", env!("CARGO_PKG_VERSION"))
    );
    for leaf in [
        "uptime",
        "clients/connected",
        "clients/disconnected",
        "clients/expired",
        "clients/maximum",
        "clients/total",
        "messages/received",
        "messages/sent",
        "messages/dropped",
        "messages/stored",
        "bytes/received",
        "bytes/sent",
        "retained messages/count",
        "subscriptions/count",
        "memory/used",
    ] {
        number(&seen, leaf);
    }
    let sol: f64 = seen["uptime/sol"].parse().unwrap();
    assert!((0.0..0.01).contains(&sol), "{sol}");
    let load: f64 = seen["load/messages/received/1min"].parse().unwrap();
    assert!(load >= 0.0);

    // A publisher sends five messages; the next publications count them,
    // and count the watcher among the connected clients.
    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("pub"));
    for id in 1..=5 {
        publisher.send(&publish(&unique_topic("x"), b"m", 1, false, Some(id)));
        publisher.expect(&puback(id));
    }
    // Values arrive one by one: wait for each to show what happened.
    read_stats_until(&mut watcher, &mut seen, 4 * SECOND, |s| {
        number(s, "messages/received") >= 5
            && number(s, "clients/connected") >= 2
            && number(s, "clients/maximum") >= 2
            && number(s, "bytes/received") > 5 * 10
            && number(s, "messages/sent") > 0
            && number(s, "subscriptions/count") >= 1
    });
    read_stats_until(&mut watcher, &mut seen, 4 * SECOND, |s| {
        s.get("load/messages/received/1min")
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|load| load > 0.0)
    });
    broker.assert_alive();
}

#[test]
fn statistics_interval_zero_turns_them_off() {
    let Some(broker) = TestBroker::with(|c| c.stats_publish_interval = Duration::ZERO) else {
        return;
    };
    let marker = unique_topic("marker");
    let mut watcher = Raw::connected_clean(broker.addr(), &unique_id("watch"));
    watcher.subscribe(1, &[("$SOL/#", 0), (marker.as_str(), 0)], &[0, 0]);
    std::thread::sleep(2 * SECOND);
    watcher.send(&publish(&marker, b"end", 0, false, None));
    // Nothing retained at subscribe time, nothing published since.
    let before = watcher.collect_until(&marker, b"end");
    assert!(before.is_empty(), "{before:?}");
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn max_connections_closes_the_one_too_many_and_the_others_work() {
    let Some(broker) = TestBroker::with(|c| c.max_connections = Some(2)) else {
        return;
    };
    let topic = unique_topic("mc");
    let mut first = Raw::connected_clean(broker.addr(), &unique_id("a"));
    let mut second = Raw::connected_clean(broker.addr(), &unique_id("b"));
    second.subscribe(1, &[(topic.as_str(), 0)], &[0]);

    let mut third = Raw::tcp(broker.addr());
    third.expect_closed();

    first.send(&publish(&topic, b"still here", 0, false, None));
    second.expect_message(&topic, b"still here", 0);
    first.ping();

    // Once one goes, there is room again: the broker forgets a connection
    // before its socket closes, so by now it is not counted.
    first.send(&DISCONNECT);
    first.expect_closed();
    let mut again = Raw::connected_clean(broker.addr(), &unique_id("c"));
    again.ping();
    broker.assert_alive();
}

#[test]
fn a_keepalive_over_max_keepalive_is_refused_with_identifier_rejected() {
    let Some(broker) = TestBroker::with(|c| c.max_keepalive = 60) else {
        return;
    };
    let mut long = Raw::tcp(broker.addr());
    long.send(&Connect::new(&unique_id("long")).keepalive(61).bytes());
    long.expect(&connack(false, 2));
    long.expect_closed();
    let mut ok = Raw::connected(
        broker.addr(),
        &Connect::new(&unique_id("ok")).keepalive(60),
        false,
    );
    ok.ping();
}

#[test]
fn keepalive_zero_is_held_to_max_keepalive() {
    let Some(broker) = TestBroker::with(|c| c.max_keepalive = 1) else {
        return;
    };
    let mut silent = Raw::connected(
        broker.addr(),
        &Connect::new(&unique_id("zero")).keepalive(0),
        false,
    );
    let took = silent.expect_closed_within(4 * SECOND);
    assert!(took >= Duration::from_millis(1400), "closed after {took:?}");
}

// ---------------------------------------------------------------------------
// Resending
// ---------------------------------------------------------------------------

#[test]
fn an_unacknowledged_message_is_resent_with_dup_to_a_connected_client() {
    let Some(broker) = TestBroker::with(|c| c.retry_interval = SECOND) else {
        return;
    };
    let topic = unique_topic("retry");
    let mut sub = Raw::connected_clean(broker.addr(), &unique_id("sub"));
    sub.subscribe(1, &[(topic.as_str(), 1)], &[1]);
    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("pub"));
    publisher.send(&publish(&topic, b"ack me", 1, false, Some(7)));
    publisher.expect(&puback(7));

    let first = sub.expect_message(&topic, b"ack me", 1);
    assert!(!first.dup);
    let started = Instant::now();
    let again = sub.expect_message(&topic, b"ack me", 1);
    let waited = started.elapsed();
    assert!(again.dup, "{again:?}");
    assert_eq!(again.id, first.id);
    assert!(
        waited >= Duration::from_millis(800),
        "resent after {waited:?}"
    );

    sub.send(&puback(again.id.unwrap()));
    sub.expect_silence(Duration::from_millis(2500));
    broker.assert_alive();
}

// ---------------------------------------------------------------------------
// max_memory
// ---------------------------------------------------------------------------

#[test]
fn a_flood_for_offline_sessions_stays_under_max_memory_and_a_live_client_is_served() {
    const LIMIT: usize = 2_000_000;
    let Some(broker) = TestBroker::with(|c| {
        c.max_memory = LIMIT;
        c.max_queued_messages = 100_000;
        c.stats_publish_interval = Duration::from_millis(200);
    }) else {
        return;
    };
    let topic = unique_topic("flood");
    let offline: Vec<String> = (0..3).map(|n| unique_id(&format!("off{n}"))).collect();
    for id in &offline {
        let mut session = Raw::connected(broker.addr(), &Connect::new(id).clean(false), false);
        session.subscribe(1, &[(topic.as_str(), 1)], &[1]);
        session.send(&DISCONNECT);
        session.expect_closed();
    }
    let mut watcher = Raw::connected_clean(broker.addr(), &unique_id("watch"));
    watcher.subscribe(
        1,
        &[
            ("$SOL/broker/memory/used", 0),
            ("$SOL/broker/messages/dropped", 0),
        ],
        &[0, 0],
    );

    // 3 MB of QoS 1 messages for three sessions, which share them; each
    // payload starts with its number.
    let payload = |n: u16| {
        let mut payload = n.to_be_bytes().to_vec();
        payload.resize(10_000, b'f');
        payload
    };
    with_bystander(&broker, || {
        let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("pub"));
        for n in 0..300u16 {
            publisher.send(&publish(&topic, &payload(n), 1, false, Some(n + 1)));
            publisher.expect(&puback(n + 1));
        }
    });

    // Every sample taken during the flood, and the ones after it.
    let mut samples = Vec::new();
    let mut dropped = 0;
    let deadline = Instant::now() + 2 * SECOND;
    while Instant::now() < deadline {
        let got = watcher.expect_publish();
        let value: u64 = String::from_utf8(got.payload).unwrap().parse().unwrap();
        if got.topic.ends_with(b"memory/used") {
            samples.push(value);
        } else {
            dropped = value;
        }
    }
    assert!(samples.len() >= 5, "{samples:?}");
    assert!(
        samples.iter().all(|&used| used <= LIMIT as u64),
        "over max_memory: {samples:?}"
    );
    assert!(
        dropped >= 300,
        "3 MB cannot fit in 2 MB, yet dropped is {dropped}"
    );

    // What is left for a session is its newest messages. The three
    // sessions share each payload, which counts once: about 2 MB holds
    // some 180 messages, out of 300.
    let mut back = Raw::connected(broker.addr(), &Connect::new(&offline[0]).clean(false), true);
    let first = back.expect_publish();
    assert_eq!(first.payload.len(), 10_000);
    let n = u16::from_be_bytes([first.payload[0], first.payload[1]]);
    assert!(
        n >= 100,
        "the oldest should have gone first, yet {n} is left"
    );
    broker.assert_alive();
}
