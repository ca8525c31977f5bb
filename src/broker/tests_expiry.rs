//! `persistent_client_expiration` and the caps on log lines, through the
//! core, with the harness's clock.

use std::time::Duration;

use bytes::Bytes;

use super::test_support::{id, Harness};
use super::tests::connect;
use super::*;
use crate::protocol::{Publish, QoS, Subscribe, TopicFilter, TopicName};

const SECOND: Duration = Duration::from_secs(1);
const EXPIRY: Duration = Duration::from_secs(60);

fn publish(topic: &str, pid: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new(topic).unwrap(),
        packet_id: Some(id(pid)),
        payload: Bytes::from_static(b"waiting"),
    })
}

fn subscribe(filter: &str) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: id(1),
        filters: vec![(TopicFilter::new(filter).unwrap(), QoS::AtLeastOnce)],
    })
}

fn publishes(packets: &[Packet]) -> usize {
    packets
        .iter()
        .filter(|p| matches!(p, Packet::Publish(_)))
        .count()
}

/// No statistics, no keepalive limit (their timers would add to every
/// count), and `expiration` for persistent sessions.
fn harness(expiration: Option<Duration>) -> Harness {
    Harness::with(Config {
        stats_publish_interval: Duration::ZERO,
        max_keepalive: 0,
        persistent_client_expiration: expiration,
        ..Config::default()
    })
}

impl Harness {
    /// `client_id`'s persistent session, subscribed to `a/b` at QoS 1 and
    /// left offline with one message queued for it.
    fn abandoned(&mut self, client_id: &str) {
        let conn = self.connect(connect(client_id, false), false);
        self.send(conn, subscribe("a/b"));
        self.take(conn);
        self.drop_conn(conn);
        let publisher = self.connect(connect("publisher", true), false);
        self.send(publisher, publish("a/b", 1));
        self.send(publisher, Packet::Disconnect);
        self.take(publisher);
    }
}

#[test]
fn an_abandoned_session_expires_after_the_interval_and_not_before() {
    let mut h = harness(Some(EXPIRY));
    h.abandoned("gone");
    assert_eq!(h.broker.session_count(), 1);
    assert!(
        h.broker.memory_used(&h.out) > 0,
        "the queued message counts"
    );
    assert_eq!(h.broker.client_timer_count(), 1, "one expiry timer");

    h.advance(EXPIRY - SECOND);
    assert_eq!(h.broker.session_count(), 1, "not before the interval");
    assert_eq!(h.broker.subscription_count(), 1);

    h.advance(SECOND);
    assert_eq!(h.broker.session_count(), 0);
    assert_eq!(h.broker.subscription_count(), 0);
    assert_eq!(h.broker.memory_used(&h.out), 0, "its memory is returned");
    assert_eq!(h.broker.stats().clients_expired, 1);
    assert_eq!(h.broker.client_timer_count(), 0);

    // The subscription no longer matches: a publish reaches nobody, and
    // what is held is the publisher's own session, as on a broker that
    // never had the expired one.
    let publisher = h.connect(connect("publisher", true), false);
    h.send(publisher, publish("a/b", 2));
    assert_eq!(h.broker.session_count(), 1, "the publisher's alone");
    let mut fresh = harness(Some(EXPIRY));
    let alone = fresh.connect(connect("publisher", true), false);
    fresh.send(alone, publish("a/b", 2));
    assert_eq!(
        h.broker.memory_used(&h.out),
        fresh.broker.memory_used(&fresh.out)
    );
    // The id starts afresh: no session present, nothing waiting.
    let back = h.connect(connect("gone", false), false);
    assert_eq!(publishes(&h.take(back)), 0);
}

#[test]
fn a_reconnect_cancels_the_expiry_and_the_next_absence_counts_afresh() {
    let mut h = harness(Some(EXPIRY));
    h.abandoned("back");
    h.advance(EXPIRY / 2);
    let conn = h.connect(connect("back", false), true);
    assert_eq!(publishes(&h.take(conn)), 1, "the queued message");
    let key = h.broker.sessions.key_of("back").unwrap();
    let slot = h.broker.sessions.get(key).unwrap();
    assert!(slot.expiry.is_none(), "the expiry is cancelled");
    assert!(
        slot.retry.is_some(),
        "the resent message's timer is what is left"
    );
    // Connected for far longer than the interval: never expired.
    h.advance(3 * EXPIRY);
    assert_eq!(h.broker.session_count(), 1);
    assert_eq!(h.broker.stats().clients_expired, 0);

    // Away again: the interval counts from this absence.
    h.drop_conn(conn);
    h.advance(EXPIRY - SECOND);
    assert_eq!(h.broker.session_count(), 1);
    h.advance(SECOND);
    assert_eq!(h.broker.session_count(), 0);
}

#[test]
fn a_takeover_that_keeps_the_session_leaves_no_expiry_behind() {
    let mut h = harness(Some(EXPIRY));
    let first = h.connect(connect("twice", false), false);
    let second = h.connect(connect("twice", false), true);
    assert!(h.is_closed(first));
    assert_eq!(h.broker.client_timer_count(), 0);
    h.advance(2 * EXPIRY);
    assert_eq!(h.broker.session_count(), 1);
    // And a clean session that discards an offline one cancels its expiry.
    h.drop_conn(second);
    assert_eq!(h.broker.client_timer_count(), 1);
    let clean = h.connect(connect("twice", true), false);
    assert_eq!(h.broker.client_timer_count(), 0);
    h.advance(2 * EXPIRY);
    assert_eq!(h.broker.session_count(), 1, "the clean one, connected");
    h.drop_conn(clean);
    assert_eq!(h.broker.session_count(), 0);
    assert_eq!(h.broker.stats().clients_expired, 0);
}

#[test]
fn clean_sessions_and_the_default_never_expire_anything() {
    let mut h = harness(None);
    h.abandoned("kept");
    let clean = h.connect(connect("clean", true), false);
    assert_eq!(h.broker.client_timer_count(), 0, "no expiry timer at all");
    h.advance(Duration::from_secs(365 * 24 * 60 * 60));
    assert_eq!(h.broker.session_count(), 2);
    assert_eq!(h.broker.subscription_count(), 1);
    assert!(!h.is_closed(clean));

    // With an expiry, a connected clean session is untouched too.
    let mut h = harness(Some(EXPIRY));
    let clean = h.connect(connect("clean", true), false);
    h.advance(3 * EXPIRY);
    assert!(!h.is_closed(clean));
    assert_eq!(h.broker.session_count(), 1);
}

#[test]
fn the_session_keeps_when_it_was_last_seen_in_broker_time() {
    let mut h = harness(Some(EXPIRY));
    let start = h.now;
    h.advance(10 * SECOND);
    h.abandoned("seen");
    let key = h.broker.sessions.key_of("seen").unwrap();
    let since = |h: &Harness| h.broker.sessions.get(key).unwrap().session.offline_since;
    assert_eq!(since(&h), Some(h.now - start));
    let conn = h.connect(connect("seen", false), true);
    assert_eq!(since(&h), None, "connected");
    h.drop_conn(conn);
    assert_eq!(since(&h), Some(Duration::from_secs(10)));
}

#[test]
fn sessions_that_left_together_expire_a_batch_per_turn_and_the_log_is_capped() {
    let mut h = harness(Some(EXPIRY));
    let total = 2 * expiry::EXPIRIES_PER_TURN + 500;
    for n in 0..total {
        let conn = h.connect(connect(&format!("c{n}"), false), false);
        h.drop_conn(conn);
    }
    assert_eq!(h.broker.client_timer_count(), total);
    h.advance(EXPIRY);
    assert_eq!(h.broker.session_count(), total - expiry::EXPIRIES_PER_TURN);
    // The rest are due at once: the loop polls without waiting.
    assert!(h.broker.next_deadline().is_some_and(|at| at <= h.now));
    h.advance(Duration::ZERO);
    h.advance(Duration::ZERO);
    assert_eq!(h.broker.session_count(), 0);
    assert_eq!(h.broker.stats().clients_expired, total as u64);
    // The lines held back wait on a summary timer, which is housekeeping.
    assert!(h.broker.log_limits.summary_armed());
    assert_eq!(h.broker.client_timer_count(), 0);
    h.advance(SECOND);
    assert!(!h.broker.log_limits.summary_armed());
}
