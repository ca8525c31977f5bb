//! Housekeeping through the core, without a network: the `$SOL/broker/`
//! statistics, `max_memory`, resending overdue messages and `max_keepalive`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::test_support::{id, Harness};
use super::*;
use crate::protocol::{
    Connect, ConnectReturnCode, Protocol, Publish, QoS, SubackCode, Subscribe, TopicFilter,
    TopicName,
};

const SECOND: Duration = Duration::from_secs(1);

fn connect(client_id: &str, clean: bool, keep_alive: u16) -> Connect {
    Connect {
        protocol: Protocol::V311,
        clean_session: clean,
        keep_alive,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
    }
}

fn publish(topic: &str, payload: &[u8], qos: QoS, pid: Option<u16>, retain: bool) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: TopicName::new(topic).unwrap(),
        packet_id: pid.map(id),
        payload: Bytes::copy_from_slice(payload),
    })
}

fn subscribe(pid: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: id(pid),
        filters: vec![(TopicFilter::new(filter).unwrap(), qos)],
    })
}

fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// The `$SOL/broker/` statistics among `packets`, by leaf.
fn stats_in(packets: &[Packet]) -> HashMap<String, String> {
    publishes(packets)
        .into_iter()
        .filter_map(|p| {
            let leaf = p.topic.as_str().strip_prefix("$SOL/broker/")?;
            Some((
                leaf.to_string(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            ))
        })
        .collect()
}

impl Harness {
    /// No statistics and no keepalive limit, unless a test asks for them:
    /// they would add their own messages and timers to every count.
    fn quiet(tweak: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config {
            stats_publish_interval: Duration::ZERO,
            max_keepalive: 0,
            ..Config::default()
        };
        tweak(&mut config);
        Harness::with(config)
    }

    /// A persistent session subscribed to `filter` at QoS 1, left offline.
    fn offline_subscriber(&mut self, client_id: &str, filter: &str) {
        let conn = self.connect(connect(client_id, false, 0), false);
        self.send(conn, subscribe(1, filter, QoS::AtLeastOnce));
        self.take(conn);
        self.drop_conn(conn);
    }

    fn memory_used(&self) -> usize {
        self.broker.memory_used(&self.out)
    }
}

// ---------------------------------------------------------------------------
// $SOL statistics
// ---------------------------------------------------------------------------

#[test]
fn statistics_are_retained_at_start_and_published_every_interval() {
    let mut h = Harness::with(Config {
        stats_publish_interval: 10 * SECOND,
        ..Config::default()
    });
    h.advance(Duration::ZERO);
    let sub = h.connect(connect("watch", true, 0), false);
    h.send(sub, subscribe(1, "$SOL/broker/#", QoS::AtMostOnce));
    let first = h.take(sub);
    // The values published at start, retained for a late subscriber.
    let at_start = stats_in(&first);
    assert!(
        publishes(&first)
            .iter()
            .all(|p| p.retain && p.qos == QoS::AtMostOnce),
        "{first:?}"
    );
    assert_eq!(
        at_start["version"],
        format!("sol {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(at_start["clients/connected"], "0");
    assert_eq!(at_start["uptime"], "0");
    for leaf in [
        "uptime/sol",
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
        "load/messages/received/1min",
        "load/messages/sent/5min",
        "load/bytes/received/15min",
        "load/bytes/sent/1min",
    ] {
        assert!(at_start.contains_key(leaf), "no {leaf} in {at_start:?}");
    }
    assert_eq!(at_start.len(), 29);

    let publisher = h.connect(connect("pub", true, 0), false);
    for n in 0..3 {
        h.send(
            publisher,
            publish("a/b", b"x", QoS::AtLeastOnce, Some(n + 1), false),
        );
    }
    h.out.traffic.bytes_received = 1234;
    h.advance(9 * SECOND);
    assert!(h.take(sub).is_empty(), "nothing before the interval");
    h.advance(SECOND);
    let next = h.take(sub);
    let values = stats_in(&next);
    assert!(
        publishes(&next).iter().all(|p| !p.retain),
        "live: retain cleared"
    );
    assert_eq!(values["uptime"], "10");
    assert_eq!(values["uptime/sol"], format!("{:.6}", 10.0 / 88_775.24));
    assert_eq!(values["clients/connected"], "2");
    assert_eq!(values["clients/maximum"], "2");
    assert_eq!(values["clients/total"], "2");
    assert_eq!(values["messages/received"], "3");
    assert_eq!(values["bytes/received"], "1234");
    assert_eq!(values["subscriptions/count"], "1");
    // 3 messages in 10 s: 18 a minute, folded into the 1 minute average.
    let load = 18.0 * (1.0 - (-10.0f64 / 60.0).exp());
    assert_eq!(values["load/messages/received/1min"], format!("{load:.2}"));
    let used: usize = values["memory/used"].parse().unwrap();
    assert!(used > 0, "the retained statistics themselves count");
}

#[test]
fn clients_disconnected_counts_offline_persistent_sessions() {
    let mut h = Harness::with(Config {
        stats_publish_interval: SECOND,
        ..Config::default()
    });
    h.offline_subscriber("gone", "t");
    let clean = h.connect(connect("clean", true, 0), false);
    h.drop_conn(clean);
    let watch = h.connect(connect("watch", true, 0), false);
    h.send(
        watch,
        subscribe(1, "$SOL/broker/clients/+", QoS::AtMostOnce),
    );
    h.take(watch);
    h.advance(SECOND);
    let values = stats_in(&h.take(watch));
    assert_eq!(values["clients/connected"], "1");
    assert_eq!(values["clients/disconnected"], "1");
    assert_eq!(values["clients/total"], "2");
    assert_eq!(
        values["clients/maximum"], "1",
        "gone, clean and watch were never connected together"
    );
    let again = h.connect(connect("again", true, 0), false);
    h.advance(SECOND);
    assert_eq!(stats_in(&h.take(watch))["clients/maximum"], "2");
    h.drop_conn(again);
    h.advance(SECOND);
    let values = stats_in(&h.take(watch));
    assert_eq!(values["clients/maximum"], "2");
    assert_eq!(values["clients/connected"], "1");
}

#[test]
fn interval_zero_publishes_nothing() {
    let mut h = Harness::quiet(|_| {});
    h.advance(Duration::ZERO);
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.broker.retained_count(), 0);
    let sub = h.connect(connect("watch", true, 0), false);
    h.send(sub, subscribe(1, "$SOL/#", QoS::AtMostOnce));
    h.advance(Duration::from_secs(3600));
    assert!(publishes(&h.take(sub)).is_empty());
}

// ---------------------------------------------------------------------------
// max_memory
// ---------------------------------------------------------------------------

#[test]
fn offline_queues_are_reclaimed_oldest_first_and_stay_under_the_limit() {
    let limit = 20_000;
    let mut h = Harness::quiet(|c| {
        c.max_memory = limit;
        c.max_queued_messages = 100_000;
    });
    h.offline_subscriber("a", "t");
    h.offline_subscriber("b", "t");
    let publisher = h.connect(connect("pub", true, 0), false);
    let payload = [7u8; 200];
    for n in 0..500u32 {
        let mut body = n.to_be_bytes().to_vec();
        body.extend_from_slice(&payload);
        h.send(
            publisher,
            publish("t", &body, QoS::AtLeastOnce, Some(1), false),
        );
        assert!(h.memory_used() <= limit, "over the limit after message {n}");
    }
    let dropped = h.broker.stats().messages_dropped;
    assert!(
        dropped > 500,
        "two copies of 500 messages cannot fit: {dropped}"
    );
    assert!(h.memory_used() <= limit);

    // What is left is the newest, in order.
    let a = h.connect(connect("a", false, 0), true);
    let got = h.take(a);
    let first = publishes(&got)[0];
    let n = u32::from_be_bytes(first.payload[..4].try_into().unwrap());
    assert!(n > 400, "the oldest went first, yet {n} is still queued");
}

#[test]
fn inflight_messages_are_never_reclaimed() {
    let limit = 5_000;
    let mut h = Harness::quiet(|c| {
        c.max_memory = limit;
        c.max_inflight_messages = 10;
    });
    let sub = h.connect(connect("sub", true, 0), false);
    h.send(sub, subscribe(1, "t", QoS::AtLeastOnce));
    h.take(sub);
    let publisher = h.connect(connect("pub", true, 0), false);
    let idle = h.memory_used();
    for n in 0..10 {
        h.send(
            publisher,
            publish("t", &[n; 1000], QoS::AtLeastOnce, Some(1), false),
        );
    }
    // Ten unacknowledged messages of 1000 bytes: over the limit, and none
    // of them may go.
    assert_eq!(publishes(&h.take(sub)).len(), 10);
    assert!(h.memory_used() > limit);
    assert_eq!(h.broker.stats().messages_dropped, 0);
    h.advance(SECOND);
    assert_eq!(h.broker.stats().messages_dropped, 0);
    for n in 1..=10 {
        h.send(sub, Packet::Puback(id(n)));
    }
    // The payloads are gone; what is left is the room the window keeps.
    assert!(h.memory_used() < idle + 2000, "{}", h.memory_used());
}

#[test]
fn queues_stay_bounded_while_inflight_alone_is_over_the_limit() {
    let limit = 10_000;
    let mut h = Harness::quiet(|c| {
        c.max_memory = limit;
        c.max_inflight_messages = 10;
        c.max_queued_messages = 100_000;
    });
    let sub = h.connect(connect("sub", true, 0), false);
    h.send(sub, subscribe(1, "busy", QoS::AtLeastOnce));
    h.offline_subscriber("away", "flood");
    let publisher = h.connect(connect("pub", true, 0), false);
    for _ in 0..10 {
        h.send(
            publisher,
            publish("busy", &[0; 1000], QoS::AtLeastOnce, Some(1), false),
        );
    }
    let unreclaimable = h.memory_used();
    assert!(unreclaimable > limit, "{unreclaimable}");
    // A flood for the offline session: it may pile up by a tenth of the
    // limit (and one message) at most, never for a whole second.
    let one = 5 + 1000 + super::memory::PAYLOAD_OVERHEAD;
    for _ in 0..200 {
        h.send(
            publisher,
            publish("flood", &[1; 1000], QoS::AtLeastOnce, Some(1), false),
        );
        assert!(h.memory_used() <= unreclaimable + limit / 10 + one);
    }
    assert!(h.broker.stats().messages_dropped >= 190);
}

#[test]
fn retained_messages_go_only_when_nothing_else_is_left() {
    // Nine retained messages alone are over 90% of it; eight are not.
    let limit = 14_400;
    let mut h = Harness::quiet(|c| c.max_memory = limit);
    h.offline_subscriber("off", "q");
    let publisher = h.connect(connect("pub", true, 0), false);
    // 8 retained messages of 1000 bytes and 1 queued one: under the limit.
    for n in 0..8u8 {
        let topic = format!("r/{n}");
        h.send(
            publisher,
            publish(&topic, &[n; 1000], QoS::AtMostOnce, None, true),
        );
    }
    h.send(
        publisher,
        publish("q", &[9; 1000], QoS::AtLeastOnce, Some(1), false),
    );
    assert_eq!(h.broker.stats().messages_dropped, 0);
    let before = h.memory_used();
    assert!(before < limit && before > 9 * 1000, "{before}");
    // One more retained message: over the limit. Reclaiming down to 90%
    // takes the queued message, then the oldest retained one: the
    // retained store alone is over the mark.
    h.send(
        publisher,
        publish("r/8", &[8; 1000], QoS::AtMostOnce, None, true),
    );
    assert_eq!(h.broker.stats().messages_dropped, 2);
    assert_eq!(h.broker.retained_count(), 8);
    assert!(h.memory_used() <= limit);
    let off = h.connect(connect("off", false, 0), true);
    assert!(h.take(off).is_empty(), "the queued message was dropped");

    let watch = h.connect(connect("watch", true, 0), false);
    h.send(watch, subscribe(1, "r/#", QoS::AtMostOnce));
    let mut kept: Vec<String> = publishes(&h.take(watch))
        .iter()
        .map(|p| p.topic.as_str().to_string())
        .collect();
    kept.sort();
    let newest: Vec<String> = (1..=8).map(|n| format!("r/{n}")).collect();
    assert_eq!(kept, newest, "the oldest retained message went");
}

#[test]
fn output_buffers_count_and_the_periodic_check_reclaims_for_them() {
    let limit = 50_000;
    let mut h = Harness::quiet(|c| c.max_memory = limit);
    h.offline_subscriber("off", "t");
    let publisher = h.connect(connect("pub", true, 0), false);
    for _ in 0..10 {
        h.send(
            publisher,
            publish("t", &[1; 1000], QoS::AtLeastOnce, Some(1), false),
        );
    }
    assert_eq!(h.broker.stats().messages_dropped, 0);
    let queued = h.memory_used();
    // Output buffers grow without the core routing anything: the periodic
    // check sees it.
    h.out.traffic.output_buffered = limit - 3000;
    assert_eq!(h.memory_used(), queued + limit - 3000);
    h.advance(SECOND);
    assert!(h.broker.stats().messages_dropped > 0);
    assert!(h.memory_used() <= limit);
}

// ---------------------------------------------------------------------------
// Resending overdue messages
// ---------------------------------------------------------------------------

#[test]
fn an_unacknowledged_message_is_resent_with_dup_after_retry_interval() {
    let mut h = Harness::quiet(|c| c.retry_interval = 20 * SECOND);
    let sub = h.connect(connect("sub", true, 0), false);
    h.send(sub, subscribe(1, "t", QoS::AtLeastOnce));
    h.take(sub);
    assert_eq!(h.broker.client_timer_count(), 0, "idle: no resend timer");
    let publisher = h.connect(connect("pub", true, 0), false);
    h.send(
        publisher,
        publish("t", b"m", QoS::AtLeastOnce, Some(5), false),
    );
    let first = h.take(sub);
    assert_eq!(publishes(&first).len(), 1);
    assert!(!publishes(&first)[0].dup);
    let sent_id = publishes(&first)[0].packet_id;
    assert_eq!(h.broker.client_timer_count(), 1);

    h.advance(19 * SECOND);
    assert!(h.take(sub).is_empty());
    h.advance(SECOND);
    let again = h.take(sub);
    let resent = publishes(&again);
    assert_eq!(resent.len(), 1, "{again:?}");
    assert!(resent[0].dup);
    assert_eq!(resent[0].packet_id, sent_id);
    assert_eq!(resent[0].payload.as_ref(), b"m");

    h.advance(10 * SECOND);
    assert!(h.take(sub).is_empty(), "not again within the interval");
    h.send(sub, Packet::Puback(sent_id.unwrap()));
    h.advance(60 * SECOND);
    assert!(h.take(sub).is_empty(), "acknowledged: never again");
    assert_eq!(h.broker.client_timer_count(), 0);
}

#[test]
fn an_unanswered_pubrel_is_resent_too() {
    let mut h = Harness::quiet(|c| c.retry_interval = 5 * SECOND);
    let sub = h.connect(connect("sub", true, 0), false);
    h.send(sub, subscribe(1, "t", QoS::ExactlyOnce));
    h.take(sub);
    let publisher = h.connect(connect("pub", true, 0), false);
    h.send(publisher, publish("t", b"m", QoS::AtMostOnce, None, false));
    h.send(
        publisher,
        publish("t", b"m", QoS::ExactlyOnce, Some(1), false),
    );
    let got = h.take(sub);
    let pid = publishes(&got).last().unwrap().packet_id.unwrap();
    h.advance(2 * SECOND);
    h.send(sub, Packet::Pubrec(pid));
    assert_eq!(h.take(sub), vec![Packet::Pubrel(pid)]);
    h.advance(4 * SECOND);
    assert!(h.take(sub).is_empty(), "the PUBREL went 4 s ago");
    h.advance(SECOND);
    assert_eq!(h.take(sub), vec![Packet::Pubrel(pid)]);
    h.send(sub, Packet::Pubcomp(pid));
    h.advance(60 * SECOND);
    assert!(h.take(sub).is_empty());
}

#[test]
fn nothing_is_resent_while_output_is_still_buffered_or_when_off() {
    let mut h = Harness::quiet(|c| c.retry_interval = 5 * SECOND);
    let sub = h.connect(connect("sub", true, 0), false);
    h.send(sub, subscribe(1, "t", QoS::AtLeastOnce));
    h.take(sub);
    let publisher = h.connect(connect("pub", true, 0), false);
    h.send(
        publisher,
        publish("t", b"m", QoS::AtLeastOnce, Some(1), false),
    );
    h.take(sub);
    h.out.pending.insert(sub, 10);
    h.advance(30 * SECOND);
    assert!(
        h.take(sub).is_empty(),
        "the original may still be in the buffer"
    );
    h.out.pending.remove(&sub);
    h.advance(SECOND);
    assert_eq!(publishes(&h.take(sub)).len(), 1);

    let mut off = Harness::quiet(|c| c.retry_interval = Duration::ZERO);
    let sub = off.connect(connect("sub", true, 0), false);
    off.send(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = off.connect(connect("pub", true, 0), false);
    off.send(
        publisher,
        publish("t", b"m", QoS::AtLeastOnce, Some(1), false),
    );
    off.take(sub);
    off.advance(Duration::from_secs(3600));
    assert!(off.take(sub).is_empty());
    assert_eq!(off.broker.client_timer_count(), 0);
}

#[test]
fn the_resend_timer_goes_with_the_connection() {
    let mut h = Harness::quiet(|c| c.retry_interval = 5 * SECOND);
    let sub = h.connect(connect("sub", false, 0), false);
    h.send(sub, subscribe(1, "t", QoS::AtLeastOnce));
    let publisher = h.connect(connect("pub", true, 0), false);
    h.send(
        publisher,
        publish("t", b"m", QoS::AtLeastOnce, Some(1), false),
    );
    assert_eq!(h.broker.client_timer_count(), 1);
    h.drop_conn(sub);
    assert_eq!(h.broker.client_timer_count(), 0);
    // Back again: resent at once on reconnect, and the timer re-armed.
    let back = h.connect(connect("sub", false, 0), true);
    let resent = h.take(back);
    assert!(publishes(&resent)[0].dup);
    assert_eq!(h.broker.client_timer_count(), 1);
    h.advance(5 * SECOND);
    assert_eq!(publishes(&h.take(back)).len(), 1);
}

// ---------------------------------------------------------------------------
// max_keepalive
// ---------------------------------------------------------------------------

#[test]
fn a_keepalive_above_max_keepalive_is_refused_with_0x02() {
    let mut h = Harness::quiet(|c| c.max_keepalive = 60);
    let conn = h.open();
    h.send(conn, Packet::Connect(Box::new(connect("long", true, 61))));
    assert_eq!(
        h.take(conn),
        vec![Packet::Connack(Connack {
            session_present: false,
            code: ConnectReturnCode::IdentifierRejected,
        })]
    );
    assert!(h.out.closed.contains(&conn));
    assert_eq!(h.broker.session_count(), 0);
    // At the limit is fine.
    h.connect(connect("ok", true, 60), false);
}

#[test]
fn keepalive_zero_is_held_to_max_keepalive() {
    let mut h = Harness::quiet(|c| c.max_keepalive = 10);
    let conn = h.connect(connect("zero", true, 0), false);
    h.advance(14 * SECOND);
    assert!(!h.out.closed.contains(&conn));
    h.advance(SECOND);
    assert!(
        h.out.closed.contains(&conn),
        "closed after 1.5 x 10 s of silence"
    );

    let mut unlimited = Harness::quiet(|c| c.max_keepalive = 0);
    let conn = unlimited.connect(connect("zero", true, 0), false);
    let long = unlimited.connect(connect("long", true, u16::MAX), false);
    unlimited.advance(Duration::from_secs(90_000));
    assert!(
        unlimited.out.closed.is_empty(),
        "{:?}",
        unlimited.out.closed
    );
    assert_eq!(unlimited.broker.connection_count(), 2, "{conn:?} {long:?}");
}

#[test]
fn a_payload_held_by_many_sessions_counts_once() {
    let mut h = Harness::quiet(|c| c.max_memory = 10_000_000);
    let subscribers: Vec<_> = (0..70)
        .map(|n| {
            let sub = h.connect(connect(&format!("s{n}"), true, 0), false);
            h.send(sub, subscribe(1, "big", QoS::AtLeastOnce));
            h.take(sub);
            sub
        })
        .collect();
    let idle = h.memory_used();
    let publisher = h.connect(connect("pub", true, 0), false);
    h.send(
        publisher,
        publish("big", &[1; 100_000], QoS::AtLeastOnce, Some(1), false),
    );
    for &sub in &subscribers {
        assert_eq!(publishes(&h.take(sub)).len(), 1);
    }
    // Seventy unacknowledged copies of 100 kB: one payload, and each
    // window's room.
    let held = h.memory_used() - idle;
    assert!((100_000..150_000).contains(&held), "{held}");
    for &sub in &subscribers {
        h.send(sub, Packet::Puback(id(1)));
    }
    assert!(h.memory_used() - idle < 50_000);
}

/// At the limit with nothing left to reclaim: one client holds 300 kB of
/// unacknowledged messages against a limit of 200 kB.
fn held_over_the_limit() -> (Harness, ConnId, ConnId) {
    let limit = 200_000;
    let mut h = Harness::quiet(|c| {
        c.max_memory = limit;
        c.max_inflight_messages = 10;
    });
    let publisher = h.connect(connect("pub", true, 0), false);
    h.send(
        publisher,
        publish("keep", b"mine", QoS::AtMostOnce, None, true),
    );
    let hog = h.connect(connect("hog", true, 0), false);
    h.send(hog, subscribe(1, "big", QoS::AtLeastOnce));
    for n in 0..10 {
        h.send(
            publisher,
            publish("big", &[n; 30_000], QoS::AtLeastOnce, Some(1), false),
        );
    }
    assert_eq!(publishes(&h.take(hog)).len(), 10);
    assert!(h.memory_used() > limit);
    (h, publisher, hog)
}

#[test]
fn the_client_that_holds_the_memory_is_disconnected_and_retained_messages_stay() {
    let (mut h, _publisher, hog) = held_over_the_limit();
    assert!(!h.is_closed(hog), "never in the middle of routing");
    assert_eq!(h.broker.retained_count(), 1);
    h.advance(SECOND);
    assert!(h.is_closed(hog));
    assert!(h.memory_used() < 200_000 / 10 * 9, "{}", h.memory_used());
    assert_eq!(
        h.broker.retained_count(),
        1,
        "an innocent's retained message"
    );
    // A client holding little is never disconnected for memory.
    let small = h.connect(connect("small", true, 0), false);
    h.send(small, subscribe(1, "keep", QoS::AtLeastOnce));
    h.advance(SECOND);
    assert!(!h.is_closed(small));
}

#[test]
fn at_the_limit_growth_is_refused_rather_than_paid_for_by_others() {
    let (mut h, publisher, hog) = held_over_the_limit();
    // A new subscription: 0x80. One already held may change its QoS.
    h.send(
        hog,
        Packet::Subscribe(Subscribe {
            packet_id: id(2),
            filters: vec![
                (TopicFilter::new("big").unwrap(), QoS::AtMostOnce),
                (TopicFilter::new("new").unwrap(), QoS::AtMostOnce),
            ],
        }),
    );
    let codes = match &h.take(hog)[..] {
        [Packet::Suback(suback)] => suback.codes.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        codes,
        [SubackCode::Granted(QoS::AtMostOnce), SubackCode::Failure]
    );
    // A new persistent session: CONNACK 0x03. A clean one is let in.
    let conn = h.open();
    h.send(conn, Packet::Connect(Box::new(connect("away", false, 0))));
    assert_eq!(
        h.take(conn),
        [Packet::Connack(Connack {
            session_present: false,
            code: ConnectReturnCode::ServerUnavailable,
        })]
    );
    assert!(h.is_closed(conn));
    h.connect(connect("visitor", true, 0), false);
    // A new retained message: routed, not stored, counted as dropped.
    let dropped = h.broker.stats().messages_dropped;
    h.send(
        publisher,
        publish("more", b"x", QoS::AtMostOnce, None, true),
    );
    assert_eq!(h.broker.retained_count(), 1);
    assert_eq!(h.broker.stats().messages_dropped, dropped + 1);
    // QoS 0 to a client whose output holds more than 64 kB: dropped.
    h.out.pending.insert(hog, super::memory::HOLD_AT_LIMIT);
    h.send(
        publisher,
        publish("big", b"q0", QoS::AtMostOnce, None, false),
    );
    assert!(h.take(hog).is_empty());
    assert_eq!(h.broker.stats().messages_dropped, dropped + 2);
}
