//! Whole conversations with the core, no network: packets in, packets out.

use std::time::Duration;

use bytes::Bytes;

use super::test_support::{id, Harness};
use super::*;
use crate::protocol::{
    Connect, ConnectReturnCode, PacketId, Protocol, Publish, QoS, Suback, SubackCode, Subscribe,
    TopicFilter, TopicName, Unsubscribe, Will,
};

pub(super) fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

pub(super) fn connect(client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol: Protocol::V311,
        clean_session: clean,
        keep_alive: 0,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
    }
}

pub(super) fn publish(t: &str, payload: &str, qos: QoS, pid: Option<u16>, retain: bool) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: topic(t),
        packet_id: pid.map(id),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    })
}

pub(super) fn subscribe(pid: u16, filters: &[(&str, QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: id(pid),
        filters: filters
            .iter()
            .map(|(f, q)| (TopicFilter::new(*f).unwrap(), *q))
            .collect(),
    })
}

fn accepted(session_present: bool) -> Packet {
    Packet::Connack(Connack {
        session_present,
        code: ConnectReturnCode::Accepted,
    })
}

/// The payloads of the PUBLISH packets in `packets`.
pub(super) fn payloads(packets: &[Packet]) -> Vec<String> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
            _ => None,
        })
        .collect()
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Config::default())
    }
}

#[test]
fn publish_reaches_matching_subscribers_only() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", true), false);
    let other = h.connect(connect("other", true), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("a/+/c", QoS::AtMostOnce)]));
    h.send(other, subscribe(1, &[("x/#", QoS::AtMostOnce)]));
    assert_eq!(
        h.out.take(sub),
        vec![Packet::Suback(Suback {
            packet_id: id(1),
            codes: vec![SubackCode::Granted(QoS::AtMostOnce)]
        })]
    );
    h.out.take(other);
    h.send(
        publisher,
        publish("a/b/c", "hello", QoS::AtMostOnce, None, false),
    );
    assert_eq!(payloads(&h.out.take(sub)), vec!["hello"]);
    assert!(h.out.take(other).is_empty());
}

#[test]
fn qos_is_downgraded_to_the_granted_qos() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", true), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("t", QoS::AtLeastOnce)]));
    h.out.take(sub);
    h.send(
        publisher,
        publish("t", "m", QoS::ExactlyOnce, Some(9), false),
    );
    assert_eq!(h.out.take(publisher), vec![Packet::Pubrec(id(9))]);
    let got = h.out.take(sub);
    match got.as_slice() {
        [Packet::Publish(p)] => {
            assert_eq!(p.qos, QoS::AtLeastOnce);
            assert!(p.packet_id.is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", true), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(
        sub,
        subscribe(
            1,
            &[
                ("a/#", QoS::AtMostOnce),
                ("a/+", QoS::ExactlyOnce),
                ("a/b", QoS::AtLeastOnce),
            ],
        ),
    );
    h.out.take(sub);
    h.send(
        publisher,
        publish("a/b", "m", QoS::ExactlyOnce, Some(1), false),
    );
    let got = h.out.take(sub);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(&got[0], Packet::Publish(p) if p.qos == QoS::ExactlyOnce));
}

#[test]
fn incoming_qos2_duplicate_is_delivered_once_and_pubrel_always_completes() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", true), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("t", QoS::AtMostOnce)]));
    h.out.take(sub);
    h.send(
        publisher,
        publish("t", "once", QoS::ExactlyOnce, Some(5), false),
    );
    h.send(
        publisher,
        publish("t", "once", QoS::ExactlyOnce, Some(5), false),
    );
    assert_eq!(
        h.out.take(publisher),
        vec![Packet::Pubrec(id(5)), Packet::Pubrec(id(5))]
    );
    assert_eq!(payloads(&h.out.take(sub)), vec!["once"]);
    h.send(publisher, Packet::Pubrel(id(5)));
    h.send(publisher, Packet::Pubrel(id(77)));
    assert_eq!(
        h.out.take(publisher),
        vec![Packet::Pubcomp(id(5)), Packet::Pubcomp(id(77))]
    );
    // After PUBREL the id is free: the same id is a new message.
    h.send(
        publisher,
        publish("t", "again", QoS::ExactlyOnce, Some(5), false),
    );
    assert_eq!(payloads(&h.out.take(sub)), vec!["again"]);
}

#[test]
fn outgoing_qos2_handshake_and_inflight_window() {
    let config = Config {
        max_inflight_messages: 2,
        ..Config::default()
    };
    let mut h = Harness::with(config);
    let sub = h.connect(connect("sub", true), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("t", QoS::ExactlyOnce)]));
    h.out.take(sub);
    for n in 0..4 {
        h.send(
            publisher,
            publish("t", &n.to_string(), QoS::ExactlyOnce, Some(n + 1), false),
        );
    }
    let first = h.out.take(sub);
    assert_eq!(
        payloads(&first),
        vec!["0", "1"],
        "only the window's worth goes out"
    );
    let Packet::Publish(p0) = &first[0] else {
        panic!()
    };
    let pid = p0.packet_id.unwrap();
    h.send(sub, Packet::Pubrec(pid));
    assert_eq!(h.out.take(sub), vec![Packet::Pubrel(pid)]);
    h.send(sub, Packet::Pubcomp(pid));
    assert_eq!(payloads(&h.out.take(sub)), vec!["2"]);
}

/// A subscriber at `qos` that has just been sent one message: the harness,
/// the subscriber, and the packet id the message went out under.
fn one_delivery_at(qos: QoS) -> (Harness, ConnId, PacketId) {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", true), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("t", qos)]));
    h.out.take(sub);
    h.send(publisher, publish("t", "x", qos, Some(1), false));
    let delivered = h.out.take(sub);
    let Some(Packet::Publish(p)) = delivered.first() else {
        panic!("{delivered:?}")
    };
    assert_eq!(p.qos, qos);
    let pid = p.packet_id.unwrap();
    (h, sub, pid)
}

#[test]
fn an_acknowledgement_for_an_unknown_id_is_answered_as_its_handshake_expects() {
    let (mut h, sub, pid) = one_delivery_at(QoS::AtLeastOnce);
    let unknown = id(pid.get().wrapping_add(100));
    h.send(sub, Packet::Pubrec(unknown));
    assert_eq!(h.out.take(sub), vec![Packet::Pubrel(unknown)]);
    h.send(sub, Packet::Puback(unknown));
    h.send(sub, Packet::Pubcomp(unknown));
    assert!(h.out.take(sub).is_empty());
    assert!(!h.is_closed(sub));
}

#[test]
fn an_acknowledgement_that_does_not_fit_its_handshake_closes_the_connection() {
    // (QoS the message went out at, the wrong acknowledgement for it)
    type Ack = fn(PacketId) -> Packet;
    let cases: [(QoS, Ack); 4] = [
        (QoS::AtLeastOnce, Packet::Pubrec),
        (QoS::AtLeastOnce, Packet::Pubcomp),
        (QoS::ExactlyOnce, Packet::Puback),
        // PUBCOMP before PUBREC.
        (QoS::ExactlyOnce, Packet::Pubcomp),
    ];
    for (qos, ack) in cases {
        let (mut h, sub, pid) = one_delivery_at(qos);
        h.send(sub, ack(pid));
        assert!(h.out.take(sub).is_empty(), "{qos:?} {:?}", ack(pid));
        assert!(h.is_closed(sub), "{qos:?} {:?}", ack(pid));
    }
    // A duplicate PUBREC, after the PUBREL went out, still fits.
    let (mut h, sub, pid) = one_delivery_at(QoS::ExactlyOnce);
    h.send(sub, Packet::Pubrec(pid));
    h.send(sub, Packet::Pubrec(pid));
    assert_eq!(
        h.out.take(sub),
        vec![Packet::Pubrel(pid), Packet::Pubrel(pid)]
    );
    assert!(!h.is_closed(sub));
}

#[test]
fn retained_messages_are_stored_replaced_deleted_and_sent_on_subscribe() {
    let mut h = Harness::new();
    let publisher = h.connect(connect("pub", true), false);
    h.send(
        publisher,
        publish("r/1", "old", QoS::AtMostOnce, None, true),
    );
    h.send(
        publisher,
        publish("r/1", "new", QoS::AtLeastOnce, Some(1), true),
    );
    h.send(
        publisher,
        publish("r/2", "two", QoS::AtMostOnce, None, true),
    );
    h.send(
        publisher,
        publish("r/3", "three", QoS::AtMostOnce, None, true),
    );
    h.send(publisher, publish("r/3", "", QoS::AtMostOnce, None, true));
    assert_eq!(h.broker.retained_count(), 2);

    let sub = h.connect(connect("sub", true), false);
    h.send(sub, subscribe(1, &[("r/+", QoS::AtLeastOnce)]));
    let got = h.out.take(sub);
    assert!(matches!(got[0], Packet::Suback(_)), "SUBACK comes first");
    let mut retained: Vec<(String, bool, QoS)> = got[1..]
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => (
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.retain,
                p.qos,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    retained.sort();
    assert_eq!(
        retained,
        vec![
            ("new".into(), true, QoS::AtLeastOnce),
            ("two".into(), true, QoS::AtMostOnce)
        ]
    );

    // Live forwarding clears the retain flag.
    h.send(
        publisher,
        publish("r/1", "live", QoS::AtMostOnce, None, true),
    );
    match h.out.take(sub).as_slice() {
        [Packet::Publish(p)] => assert!(!p.retain),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stored_messages_remember_the_session_they_came_from() {
    use crate::session::Origin;

    let mut h = Harness::new();
    let sub = h.connect(connect("sub", false), false);
    h.send(sub, subscribe(1, &[("t/#", QoS::AtLeastOnce)]));
    h.drop_conn(sub);
    let mut with_will = connect("pub", true);
    with_will.will = Some(Will {
        topic: topic("t/will"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    let publisher = h.connect(with_will, false);
    let from = h.broker.sessions.key_of("pub").unwrap();
    h.send(
        publisher,
        publish("t/a", "m", QoS::AtLeastOnce, Some(1), true),
    );
    h.drop_conn(publisher);

    let mut retained = Vec::new();
    let everything = TopicFilter::new("#").unwrap();
    let _ = h.broker.retained.try_for_each_match(&everything, |m| {
        retained.push((m.topic.to_string(), m.origin));
        std::ops::ControlFlow::Continue(())
    });
    assert_eq!(retained, [("t/a".to_string(), Origin::client(from))]);
    let key = h.broker.sessions.key_of("sub").unwrap();
    let slot = h.broker.sessions.get_mut(key).unwrap();
    let mut queued = Vec::new();
    slot.session.keep_messages(|m| {
        queued.push((m.topic.to_string(), m.origin, m.retain));
        true
    });
    assert_eq!(
        queued,
        [
            ("t/a".to_string(), Origin::client(from), false),
            ("t/will".to_string(), Origin::client(from), false),
        ],
        "the message and the will, each marked with its publisher"
    );
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards_and_sol_is_read_only() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", true), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(
        sub,
        subscribe(
            1,
            &[
                ("#", QoS::AtMostOnce),
                ("+/x", QoS::AtMostOnce),
                ("$SOL/#", QoS::AtMostOnce),
            ],
        ),
    );
    h.out.take(sub);
    h.send(
        publisher,
        publish("$other/x", "m", QoS::AtMostOnce, None, false),
    );
    assert!(h.out.take(sub).is_empty());
    h.send(
        publisher,
        publish("$SOL/broker/uptime", "0", QoS::AtLeastOnce, Some(3), true),
    );
    assert_eq!(
        h.out.take(publisher),
        vec![Packet::Puback(id(3))],
        "acknowledged"
    );
    assert!(h.out.take(sub).is_empty(), "and dropped");
    assert_eq!(h.broker.retained_count(), 0);
}

#[test]
fn persistent_session_queues_offline_and_resends_inflight_with_dup() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", false), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("t", QoS::AtLeastOnce)]));
    h.out.take(sub);
    h.send(
        publisher,
        publish("t", "unacked", QoS::AtLeastOnce, Some(1), false),
    );
    assert_eq!(payloads(&h.out.take(sub)), vec!["unacked"]);
    h.broker
        .closed(sub, CloseReason::PeerClosed, h.now, &mut h.out);
    assert_eq!(h.broker.session_count(), 2, "the persistent session stays");

    h.send(
        publisher,
        publish("t", "queued", QoS::AtLeastOnce, Some(2), false),
    );
    h.send(
        publisher,
        publish("t", "qos0 is not queued", QoS::AtMostOnce, None, false),
    );

    let back = h.open();
    h.send(back, Packet::Connect(Box::new(connect("sub", false))));
    let got = h.out.take(back);
    assert_eq!(got[0], accepted(true));
    let publishes: Vec<(String, bool)> = got[1..]
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => (String::from_utf8_lossy(&p.payload).into_owned(), p.dup),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        publishes,
        vec![("unacked".into(), true), ("queued".into(), false)]
    );

    // A clean reconnect discards the session.
    h.send(back, Packet::Disconnect);
    let clean = h.connect(connect("sub", true), false);
    h.send(
        publisher,
        publish("t", "gone", QoS::AtLeastOnce, Some(3), false),
    );
    assert!(h.out.take(clean).is_empty());
}

#[test]
fn offline_queue_is_bounded_and_counts_drops() {
    let config = Config {
        max_queued_messages: 3,
        ..Config::default()
    };
    let mut h = Harness::with(config);
    let sub = h.connect(connect("sub", false), false);
    h.send(sub, subscribe(1, &[("t", QoS::AtLeastOnce)]));
    h.send(sub, Packet::Disconnect);
    let publisher = h.connect(connect("pub", true), false);
    for n in 0..5 {
        h.send(
            publisher,
            publish("t", &n.to_string(), QoS::AtLeastOnce, Some(n + 1), false),
        );
    }
    assert_eq!(h.broker.stats().messages_dropped, 2);
    let back = h.open();
    h.send(back, Packet::Connect(Box::new(connect("sub", false))));
    assert_eq!(payloads(&h.out.take(back)), vec!["0", "1", "2"]);
}

#[test]
fn client_id_rules() {
    let mut h = Harness::new();
    // Empty id with clean session: a generated id.
    h.connect(connect("", true), false);
    // Empty id without clean session: 0x02 and close.
    let conn = h.open();
    h.send(conn, Packet::Connect(Box::new(connect("", false))));
    assert_eq!(
        h.out.take(conn),
        vec![Packet::Connack(Connack {
            session_present: false,
            code: ConnectReturnCode::IdentifierRejected
        })]
    );
    assert!(h.is_closed(conn));
    // Nothing after a refusal is processed.
    h.send(conn, Packet::Pingreq);
    assert!(h.out.take(conn).is_empty());
    // MQTT 3.1 keeps its 23-byte limit.
    let conn = h.open();
    let mut c = connect(&"x".repeat(24), true);
    c.protocol = Protocol::V31;
    h.send(conn, Packet::Connect(Box::new(c)));
    assert!(h.is_closed(conn));
}

#[test]
fn second_connect_closes_and_publishes_the_will() {
    let mut h = Harness::new();
    let watcher = h.connect(connect("watcher", true), false);
    h.send(watcher, subscribe(1, &[("will", QoS::AtMostOnce)]));
    h.out.take(watcher);
    let mut c = connect("c", true);
    c.will = Some(Will {
        topic: topic("will"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
    });
    let conn = h.connect(c.clone(), false);
    h.send(conn, Packet::Connect(Box::new(c)));
    assert!(h.is_closed(conn));
    assert_eq!(payloads(&h.out.take(watcher)), vec!["gone"]);
}

#[test]
fn a_publisher_subscribed_to_its_topic_is_acknowledged_before_its_copy() {
    let mut h = Harness::new();
    let client = h.connect(connect("echo", true), false);
    h.send(client, subscribe(1, &[("t", QoS::ExactlyOnce)]));
    h.out.take(client);
    h.send(
        client,
        publish("t", "one", QoS::AtLeastOnce, Some(4), false),
    );
    match h.out.take(client).as_slice() {
        [Packet::Puback(ack), Packet::Publish(p)] => {
            assert_eq!((*ack, p.qos), (id(4), QoS::AtLeastOnce));
        }
        other => panic!("PUBACK first, then the copy; got {other:?}"),
    }
    h.send(
        client,
        publish("t", "two", QoS::ExactlyOnce, Some(5), false),
    );
    match h.out.take(client).as_slice() {
        [Packet::Pubrec(ack), Packet::Publish(p)] => {
            assert_eq!((*ack, p.qos), (id(5), QoS::ExactlyOnce));
        }
        other => panic!("PUBREC first, then the copy; got {other:?}"),
    }
    // The duplicate before PUBREL is acknowledged again, not delivered again.
    h.send(
        client,
        publish("t", "two", QoS::ExactlyOnce, Some(5), false),
    );
    assert_eq!(h.out.take(client), vec![Packet::Pubrec(id(5))]);
}

/// A takeover with a will set on the old connection, for one combination
/// of clean session on the old and the new connection: whether the will
/// reached a watcher.
fn will_published_on_takeover(old_clean: bool, new_clean: bool) -> bool {
    let mut h = Harness::new();
    let watcher = h.connect(connect("watcher", true), false);
    h.send(watcher, subscribe(1, &[("will", QoS::AtMostOnce)]));
    h.out.take(watcher);
    let mut c = connect("same", old_clean);
    c.will = Some(Will {
        topic: topic("will"),
        payload: Bytes::from_static(b"old"),
        qos: QoS::AtMostOnce,
        retain: false,
    });
    let old = h.connect(c, false);
    let present = !old_clean && !new_clean;
    let new = h.connect(connect("same", new_clean), present);
    assert!(h.is_closed(old));
    assert!(!h.is_closed(new));
    // Packets from the old connection are ignored from now on.
    h.send(old, Packet::Pingreq);
    assert!(h.out.take(old).is_empty());
    let got = payloads(&h.out.take(watcher));
    assert!(got.is_empty() || got == ["old"], "{got:?}");
    !got.is_empty()
}

#[test]
fn takeover_publishes_the_old_will_unless_the_session_continues() {
    // As mosquitto does, and as MQTT 5 says (the will goes when the session
    // ends): a takeover where both connections keep the session is a client
    // that came back, not one that failed.
    assert!(!will_published_on_takeover(false, false));
    assert!(will_published_on_takeover(false, true));
    assert!(will_published_on_takeover(true, false));
    assert!(will_published_on_takeover(true, true));
}

#[test]
fn a_retained_will_is_retained_on_takeover() {
    let mut h = Harness::new();
    let mut c = connect("same", true);
    c.will = Some(Will {
        topic: topic("will"),
        payload: Bytes::from_static(b"old"),
        qos: QoS::AtMostOnce,
        retain: true,
    });
    h.connect(c, false);
    h.connect(connect("same", false), false);
    assert_eq!(h.broker.retained_count(), 1, "a retained will is retained");
}

#[test]
fn shutdown_publishes_every_will_once_before_closing() {
    let mut h = Harness::new();
    // The watcher is closed first, as the network layer may well do: the
    // wills must already be in its output by then.
    let watcher = h.connect(connect("watcher", true), false);
    h.send(watcher, subscribe(1, &[("will/#", QoS::AtLeastOnce)]));
    h.out.take(watcher);
    let with_will = |id: &str, t: &str, retain: bool| {
        let mut c = connect(id, true);
        c.will = Some(Will {
            topic: topic(t),
            payload: Bytes::from(id.to_string()),
            qos: QoS::AtLeastOnce,
            retain,
        });
        c
    };
    let a = h.connect(with_will("a", "will/a", false), false);
    let b = h.connect(with_will("b", "will/b", true), false);
    // A will aimed at $SOL is dropped like any client write there.
    let sol = h.connect(with_will("s", "$SOL/x", false), false);
    let plain = h.connect(connect("plain", true), false);

    h.broker.shutdown(h.now, &mut h.out);
    for conn in [watcher, a, b, sol, plain] {
        h.broker
            .closed(conn, CloseReason::Shutdown, h.now, &mut h.out);
    }
    let got = h.out.take(watcher);
    let mut wills: Vec<(String, String, bool)> = got
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((
                p.topic.to_string(),
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.retain,
            )),
            _ => None,
        })
        .collect();
    wills.sort();
    assert_eq!(
        wills,
        vec![
            ("will/a".to_string(), "a".to_string(), false),
            ("will/b".to_string(), "b".to_string(), false),
        ],
        "each will once, none for $SOL or a client without one: {got:?}"
    );
    // The retained will is stored.
    assert_eq!(h.broker.retained_count(), 1);
}

#[test]
fn disconnect_discards_the_will() {
    let mut h = Harness::new();
    let watcher = h.connect(connect("watcher", true), false);
    h.send(watcher, subscribe(1, &[("will", QoS::AtMostOnce)]));
    h.out.take(watcher);
    let mut c = connect("c", true);
    c.will = Some(Will {
        topic: topic("will"),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        retain: false,
    });
    let conn = h.connect(c, false);
    h.send(conn, Packet::Disconnect);
    assert!(h.is_closed(conn));
    assert!(h.out.take(watcher).is_empty());
    assert_eq!(h.broker.connection_count(), 1);
    assert_eq!(h.broker.session_count(), 1, "the clean session ended");
}

#[test]
fn keepalive_expiry_closes_after_one_and_a_half_times_and_publishes_the_will() {
    let mut h = Harness::new();
    let watcher = h.connect(connect("watcher", true), false);
    h.send(watcher, subscribe(1, &[("will", QoS::AtMostOnce)]));
    h.out.take(watcher);
    let mut c = connect("c", true);
    c.keep_alive = 10;
    c.will = Some(Will {
        topic: topic("will"),
        payload: Bytes::from_static(b"timeout"),
        qos: QoS::AtMostOnce,
        retain: false,
    });
    let conn = h.connect(c, false);
    h.advance(Duration::from_secs(9));
    h.send(conn, Packet::Pingreq);
    assert_eq!(h.out.take(conn), vec![Packet::Pingresp]);
    // 14.9 s of silence since the PINGREQ: still alive.
    h.advance(Duration::from_millis(14_900));
    assert!(!h.is_closed(conn));
    h.advance(Duration::from_millis(200));
    assert!(h.is_closed(conn));
    assert_eq!(payloads(&h.out.take(watcher)), vec!["timeout"]);
    // Only the watcher's keepalive is left: it asked for 0, and is held
    // to max_keepalive.
    assert_eq!(h.broker.client_timer_count(), 1, "no timer left behind");
}

#[test]
fn connect_timeout_closes_silent_sockets() {
    let config = Config {
        connect_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let mut h = Harness::with(config);
    let conn = h.open();
    h.advance(Duration::from_millis(1_900));
    assert!(!h.is_closed(conn));
    h.advance(Duration::from_millis(200));
    assert!(h.is_closed(conn));
    assert_eq!(h.broker.connection_count(), 0);
}

#[test]
fn qos0_past_the_high_water_mark_is_dropped_and_counted() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", true), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("t", QoS::AtMostOnce)]));
    h.out.take(sub);
    h.out.pending.insert(sub, QOS0_OUTPUT_LIMIT);
    h.send(publisher, publish("t", "m", QoS::AtMostOnce, None, false));
    assert!(h.out.take(sub).is_empty());
    assert_eq!(h.broker.stats().messages_dropped, 1);
}

#[test]
fn unsubscribe_stops_delivery_and_is_always_acknowledged() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", true), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("t", QoS::AtMostOnce)]));
    let unsub = |pid, f: &str| {
        Packet::Unsubscribe(Unsubscribe {
            packet_id: id(pid),
            filters: vec![TopicFilter::new(f).unwrap()],
        })
    };
    h.send(sub, unsub(2, "t"));
    h.send(sub, unsub(3, "never/subscribed"));
    let got = h.out.take(sub);
    assert_eq!(
        &got[1..],
        &[Packet::Unsuback(id(2)), Packet::Unsuback(id(3))]
    );
    h.send(publisher, publish("t", "m", QoS::AtMostOnce, None, false));
    assert!(h.out.take(sub).is_empty());
    assert_eq!(h.broker.subscription_count(), 0);
}

#[test]
fn closing_a_clean_session_frees_everything() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", true), false);
    h.send(
        sub,
        subscribe(1, &[("a/#", QoS::AtLeastOnce), ("b", QoS::AtMostOnce)]),
    );
    h.broker
        .closed(sub, CloseReason::PeerClosed, h.now, &mut h.out);
    assert_eq!(h.broker.connection_count(), 0);
    assert_eq!(h.broker.session_count(), 0);
    assert_eq!(h.broker.subscription_count(), 0);
    assert_eq!(h.broker.client_timer_count(), 0);
}

#[test]
fn a_will_cannot_write_under_sol() {
    let mut h = Harness::new();
    let watcher = h.connect(connect("watch", true), false);
    h.send(watcher, subscribe(1, &[("$SOL/#", QoS::AtMostOnce)]));
    h.out.take(watcher);
    let mut c = connect("w", true);
    c.will = Some(Will {
        topic: topic("$SOL/broker/uptime"),
        payload: Bytes::from_static(b"forged"),
        qos: QoS::AtMostOnce,
        retain: true,
    });
    let conn = h.connect(c, false);
    h.broker
        .closed(conn, CloseReason::PeerClosed, h.now, &mut h.out);
    assert!(payloads(&h.out.take(watcher)).is_empty());
    assert_eq!(h.broker.retained_count(), 0);
}

#[test]
fn generated_client_ids_cannot_be_guessed_to_take_a_session_over() {
    let mut h = Harness::new();
    let victim = h.connect(connect("", true), false);
    let second = h.connect(connect("", true), false);
    for guess in [
        "auto-0000000000000001",
        "auto-0000000000000002",
        "auto-1",
        "auto-2",
    ] {
        h.connect(connect(guess, true), false);
    }
    assert!(!h.is_closed(victim));
    assert!(!h.is_closed(second));
}

#[test]
fn one_subscribe_naming_a_filter_many_times_walks_the_retained_messages_once() {
    let mut h = Harness::new();
    let publisher = h.connect(connect("p", true), false);
    for i in 0..50 {
        h.send(
            publisher,
            publish(&format!("r/{i}"), "x", QoS::AtMostOnce, None, true),
        );
    }
    let sub = h.connect(connect("s", true), false);
    h.send(sub, subscribe(1, &[("#", QoS::AtMostOnce); 1000]));
    let got = h.out.take(sub);
    match got.first() {
        Some(Packet::Suback(s)) => assert_eq!(s.codes.len(), 1000),
        other => panic!("{other:?}"),
    }
    assert_eq!(payloads(&got).len(), 50, "each retained message once");
}

/// The PUBLISH a subscriber should receive from a live forward: DUP 0,
/// retain cleared.
fn forwarded(t: &str, payload: &str, qos: QoS, pid: Option<u16>) -> Packet {
    publish(t, payload, qos, pid, false)
}

#[test]
fn one_publish_reaches_each_qos_with_each_sessions_own_packet_id() {
    let mut h = Harness::new();
    let publisher = h.connect(connect("pub", true), false);
    let q0 = h.connect(connect("q0", true), false);
    let q1 = h.connect(connect("q1", true), false);
    let q1_busy = h.connect(connect("q1-busy", true), false);
    let q2 = h.connect(connect("q2", true), false);
    let q2_overlap = h.connect(connect("q2-overlap", true), false);
    h.send(q0, subscribe(1, &[("room/#", QoS::AtMostOnce)]));
    h.send(q1, subscribe(1, &[("room/+", QoS::AtLeastOnce)]));
    h.send(q1_busy, subscribe(1, &[("room/temp", QoS::AtLeastOnce)]));
    h.send(q1_busy, subscribe(2, &[("warm-up", QoS::AtLeastOnce)]));
    h.send(q2, subscribe(1, &[("room/temp", QoS::ExactlyOnce)]));
    h.send(q2, subscribe(2, &[("warm-up", QoS::ExactlyOnce)]));
    // Two filters match: one copy, at the higher QoS.
    let overlapping = [("room/#", QoS::AtMostOnce), ("room/temp", QoS::ExactlyOnce)];
    h.send(q2_overlap, subscribe(1, &overlapping));
    // Move two sessions' next packet ids away from 1: q1-busy and q2 each
    // get two messages (ids 1 and 2); q2 acknowledges the first.
    for n in 1..=2 {
        h.send(
            publisher,
            publish("warm-up", "w", QoS::AtLeastOnce, Some(n), false),
        );
    }
    h.send(q2, Packet::Puback(id(1)));
    let everyone = [publisher, q0, q1, q1_busy, q2, q2_overlap];
    for conn in everyone {
        h.take(conn);
    }
    let shared_before = h.out.sent_as_bytes;

    // Published at QoS 2 with retain: each copy at its own QoS, retain
    // cleared ([MQTT-3.3.1-9]), DUP 0, and the id its session picked.
    h.send(
        publisher,
        publish("room/temp", "21.5", QoS::ExactlyOnce, Some(7), true),
    );
    assert_eq!(h.take(publisher), vec![Packet::Pubrec(id(7))]);
    let expected = [
        (q0, forwarded("room/temp", "21.5", QoS::AtMostOnce, None)),
        (
            q1,
            forwarded("room/temp", "21.5", QoS::AtLeastOnce, Some(1)),
        ),
        (
            q1_busy,
            forwarded("room/temp", "21.5", QoS::AtLeastOnce, Some(3)),
        ),
        (
            q2,
            forwarded("room/temp", "21.5", QoS::ExactlyOnce, Some(3)),
        ),
        (
            q2_overlap,
            forwarded("room/temp", "21.5", QoS::ExactlyOnce, Some(1)),
        ),
    ];
    for (conn, packet) in &expected {
        assert_eq!(h.take(*conn), vec![packet.clone()], "{conn:?}");
    }
    assert_eq!(
        h.out.sent_as_bytes - shared_before,
        expected.len(),
        "every live copy went out as shared bytes"
    );

    // The next message is encoded afresh, and each id moves on.
    h.send(
        publisher,
        publish("room/temp", "22", QoS::AtLeastOnce, Some(8), false),
    );
    assert_eq!(h.take(publisher), vec![Packet::Puback(id(8))]);
    let expected = [
        (q0, forwarded("room/temp", "22", QoS::AtMostOnce, None)),
        (q1, forwarded("room/temp", "22", QoS::AtLeastOnce, Some(2))),
        (
            q1_busy,
            forwarded("room/temp", "22", QoS::AtLeastOnce, Some(4)),
        ),
        (q2, forwarded("room/temp", "22", QoS::AtLeastOnce, Some(4))),
        (
            q2_overlap,
            forwarded("room/temp", "22", QoS::AtLeastOnce, Some(2)),
        ),
    ];
    for (conn, packet) in &expected {
        assert_eq!(h.take(*conn), vec![packet.clone()], "{conn:?}");
    }
    assert_eq!(h.broker.stats().messages_sent, 4 + 10);
}

#[test]
fn a_shared_delivery_is_kept_for_resend_and_resent_as_its_own_packet() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", false), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("t", QoS::ExactlyOnce)]));
    h.take(sub);
    h.send(
        publisher,
        publish("t", "kept", QoS::ExactlyOnce, Some(1), false),
    );
    assert_eq!(
        h.take(sub),
        vec![forwarded("t", "kept", QoS::ExactlyOnce, Some(1))]
    );
    // The client goes away without acknowledging; on its return the
    // session's own copy is sent again, DUP set ([MQTT-4.4.0-1]).
    h.drop_conn(sub);
    let sub = h.connect(connect("sub", false), true);
    let again = Packet::Publish(Publish {
        dup: true,
        ..match forwarded("t", "kept", QoS::ExactlyOnce, Some(1)) {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    });
    assert_eq!(h.take(sub), vec![again]);
}

#[test]
fn qos0_for_an_offline_session_is_neither_sent_nor_encoded() {
    let mut h = Harness::new();
    let sub = h.connect(connect("sub", false), false);
    let publisher = h.connect(connect("pub", true), false);
    h.send(sub, subscribe(1, &[("t", QoS::AtMostOnce)]));
    h.drop_conn(sub);
    let shared_before = h.out.sent_as_bytes;
    h.send(publisher, publish("t", "m", QoS::AtMostOnce, None, false));
    assert_eq!(h.out.sent_as_bytes, shared_before);
    assert_eq!(h.broker.stats().messages_sent, 0);
    assert_eq!(
        h.broker.stats().messages_dropped,
        0,
        "offline QoS 0 is not counted"
    );
}

/// An outbox that knows only packets: it gets `send_bytes` from the trait.
#[derive(Default)]
struct PacketsOnly {
    sent: Vec<(ConnId, Packet)>,
}

impl Outbox for PacketsOnly {
    fn send(&mut self, conn: ConnId, packet: &Packet) {
        self.sent.push((conn, packet.clone()));
    }
    fn pending(&self, _conn: ConnId) -> usize {
        0
    }
    fn close(&mut self, _conn: ConnId) {}
}

#[test]
fn send_bytes_by_default_decodes_into_packets_and_sends_each() {
    let conn = ConnId { key: 1, serial: 1 };
    let mut out = PacketsOnly::default();
    let bytes = [0x30, 4, 0, 1, b't', b'p', 0xD0, 0, 0x40, 2, 0x01, 0x02];
    out.send_bytes(conn, &bytes);
    assert_eq!(
        out.sent,
        vec![
            (conn, forwarded("t", "p", QoS::AtMostOnce, None)),
            (conn, Packet::Pingresp),
            (conn, Packet::Puback(id(0x0102))),
        ]
    );
    // A truncated or broken tail is not sent; what came before it is.
    let mut out = PacketsOnly::default();
    out.send_bytes(conn, &[0xD0, 0, 0x40, 2, 0x01]);
    out.send_bytes(conn, &[0xD0, 0, 0x10, 0]);
    out.send_bytes(conn, &[]);
    assert_eq!(
        out.sent,
        vec![(conn, Packet::Pingresp), (conn, Packet::Pingresp)]
    );
}
