//! Conversations about work spread over turns: retained walks that pause
//! and go on (`walks.rs`), and the work routing reports to the loop.

use std::time::Duration;

use super::test_support::{id, Harness};
use super::tests::{connect, payloads, publish, subscribe};
use super::*;
use crate::protocol::{Packet, QoS};

fn retained_topics(h: &mut Harness, n: usize) {
    let publisher = h.connect(connect("p", true), false);
    for i in 0..n {
        h.send(
            publisher,
            publish(
                &format!("r/{i}"),
                &format!("{i}"),
                QoS::AtMostOnce,
                None,
                true,
            ),
        );
    }
}

/// Ticks until no walk is left, at most `turns` times.
fn run_walks(h: &mut Harness, turns: usize) {
    for _ in 0..turns {
        if h.broker.retained_walks() == 0 {
            return;
        }
        h.advance(Duration::ZERO);
    }
    assert_eq!(
        h.broker.retained_walks(),
        0,
        "walks left after {turns} turns"
    );
}

#[test]
fn a_full_subscriber_pauses_the_walks_and_gets_everything_once_it_drains() {
    let mut h = Harness::with(Config::default());
    retained_topics(&mut h, 100);
    let sub = h.connect(connect("s", true), false);
    // The subscriber's output is already full: nothing more can go out.
    h.out.pending.insert(sub, QOS0_OUTPUT_LIMIT);
    let filters = [
        ("#", QoS::AtMostOnce),
        ("r/#", QoS::AtMostOnce),
        ("+/+", QoS::AtMostOnce),
    ];
    h.send(sub, subscribe(1, &filters));
    h.advance(Duration::ZERO);
    let got = h.take(sub);
    assert!(matches!(got.as_slice(), [Packet::Suback(_)]), "{got:?}");
    // Nothing was lost: the walks wait, and a timer will look again.
    assert_eq!(h.broker.stats().messages_dropped, 0);
    assert_eq!(h.broker.retained_walks(), 3);
    // Nothing to do at once: the loop may sleep until the timer.
    assert!(h.broker.next_deadline().is_some_and(|d| d > h.now));

    h.out.pending.insert(sub, 0);
    run_walks(&mut h, 10);
    let got = h.take(sub);
    assert_eq!(payloads(&got).len(), 300, "each filter's 100 messages");
    assert!(got
        .iter()
        .all(|p| matches!(p, Packet::Publish(p) if p.retain)));
    // In the order subscribed: the first filter's messages first.
    let first: Vec<_> = payloads(&got[..100]).into_iter().collect();
    let mut sorted = first.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 100, "the first 100 are the first walk's");
}

#[test]
fn a_walk_longer_than_a_turn_goes_on_turn_after_turn() {
    let mut h = Harness::with(Config::default());
    // 30 000 topics under one level: `+/+` over them is more than one
    // turn's budget.
    let publisher = h.connect(connect("p", true), false);
    for i in 0..30_000 {
        h.send(
            publisher,
            publish(&format!("w/{i}"), "x", QoS::AtMostOnce, None, true),
        );
    }
    let sub = h.connect(connect("s", true), false);
    h.send(sub, subscribe(1, &[("+/+", QoS::AtMostOnce)]));
    let first = h.take(sub);
    assert!(matches!(first.first(), Some(Packet::Suback(_))));
    let at_once = payloads(&first).len();
    assert!(at_once > 0 && at_once < 30_000, "{at_once} at once");
    assert!(
        h.broker.take_work() > 0,
        "the walk is charged to the packet"
    );
    // Due at once: the loop must not sleep while a walk can go on.
    assert!(h.broker.next_deadline().is_some_and(|d| d <= h.now));
    run_walks(&mut h, 100);
    assert_eq!(at_once + payloads(&h.take(sub)).len(), 30_000);
    assert!(h.broker.next_deadline().is_none_or(|d| d > h.now));
}

#[test]
fn a_message_stored_during_a_walk_goes_out_once_live() {
    let mut h = Harness::with(Config::default());
    let publisher = h.connect(connect("p", true), false);
    for i in 0..30_000 {
        h.send(
            publisher,
            publish(&format!("w/{i}"), "old", QoS::AtMostOnce, None, true),
        );
    }
    let sub = h.connect(connect("s", true), false);
    h.send(sub, subscribe(1, &[("w/+", QoS::AtMostOnce)]));
    h.take(sub);
    // A topic the walk has not reached yet gets a new retained message.
    h.send(
        publisher,
        publish("w/9999", "new", QoS::AtMostOnce, None, true),
    );
    run_walks(&mut h, 100);
    let got = h.take(sub);
    let w9999: Vec<_> = got
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) if p.topic.as_str() == "w/9999" => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(w9999.len(), 1, "{w9999:?}");
    assert_eq!(&w9999[0].payload[..], b"new");
    assert!(!w9999[0].retain, "forwarded live");
}

#[test]
fn a_walk_ends_with_its_connection() {
    let mut h = Harness::with(Config::default());
    retained_topics(&mut h, 100);
    let sub = h.connect(connect("s", false), false);
    h.out.pending.insert(sub, QOS0_OUTPUT_LIMIT);
    h.send(sub, subscribe(1, &[("r/#", QoS::AtMostOnce)]));
    assert_eq!(h.broker.retained_walks(), 1);
    h.drop_conn(sub);
    // The session lives on (not clean), and comes back on another
    // connection: the walk of the old one does not follow it.
    let again = h.connect(connect("s", false), true);
    h.advance(Duration::ZERO);
    assert_eq!(h.broker.retained_walks(), 0);
    assert_eq!(payloads(&h.take(again)), Vec::<String>::new());
}

#[test]
fn a_qos1_walk_waits_for_queue_room_instead_of_dropping() {
    let config = Config {
        max_inflight_messages: 2,
        max_queued_messages: 3,
        ..Config::default()
    };
    let mut h = Harness::with(config);
    let publisher = h.connect(connect("p", true), false);
    for i in 0..10 {
        h.send(
            publisher,
            publish(&format!("r/{i}"), "x", QoS::AtLeastOnce, Some(1), true),
        );
    }
    let sub = h.connect(connect("s", true), false);
    h.send(sub, subscribe(1, &[("r/#", QoS::AtLeastOnce)]));
    h.advance(Duration::ZERO);
    let mut received = payloads(&h.take(sub)).len();
    assert_eq!(received, 2, "the window's worth");
    assert_eq!(h.broker.stats().messages_dropped, 0);
    // Each PUBACK makes room: the rest come through as the client acks.
    for n in 1..=10u16 {
        h.send(sub, Packet::Puback(id(n)));
        h.advance(Duration::from_millis(20));
        received += payloads(&h.take(sub)).len();
    }
    assert_eq!(received, 10);
    assert_eq!(h.broker.stats().messages_dropped, 0);
    assert_eq!(h.broker.retained_walks(), 0);
}

#[test]
fn routing_reports_the_nodes_it_visited() {
    let mut h = Harness::with(Config::default());
    let sub = h.connect(connect("s", true), false);
    let deep = format!("a{}/z", "/+".repeat(50));
    h.send(sub, subscribe(1, &[(deep.as_str(), QoS::AtMostOnce)]));
    h.broker.take_work();
    let publisher = h.connect(connect("p", true), false);
    let topic = format!("a{}/y", "/t".repeat(50));
    h.send(
        publisher,
        publish(&topic, "x", QoS::AtMostOnce, None, false),
    );
    let work = h.broker.take_work();
    assert!(work > 50, "{work} nodes");
    assert_eq!(h.broker.take_work(), 0);
}
