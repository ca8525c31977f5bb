//! Persistent sessions (clean session 0): what survives a reconnect, what is
//! queued while the client is away, what is resent, and what clean session 1
//! throws away.

mod common;

use common::*;

/// Ends a persistent session so none is left behind on a shared broker.
fn forget(broker: &TestBroker, id: &str) {
    let mut raw = Raw::connected_clean(broker.addr(), id);
    raw.send(&DISCONNECT);
    raw.expect_closed();
}

/// Connects with clean session 0 and expects this session-present flag.
fn resume(broker: &TestBroker, id: &str, present: bool) -> Raw {
    Raw::connected(broker.addr(), &Connect::new(id).clean(false), present)
}

fn leave(mut raw: Raw) {
    raw.send(&DISCONNECT);
    raw.expect_closed();
}

/// [MQTT-3.1.2-4], [MQTT-3.2.2-2]: the session and its subscriptions survive
/// a reconnect, and CONNACK says so (20 02 01 00).
#[test]
fn persistent_session_keeps_subscriptions() {
    let broker = TestBroker::start();
    let id = unique_id("k");
    let t = unique_topic("k");
    let mut raw = resume(&broker, &id, false);
    raw.subscribe(1, &[(&t, 1)], &[1]);
    leave(raw);

    let mut raw = Raw::tcp(broker.addr());
    raw.send(&Connect::new(&id).clean(false).bytes());
    raw.expect(&[0x20, 0x02, 0x01, 0x00]);
    raw.send(&publish(&t, b"still here", 0, false, None));
    raw.expect_message(&t, b"still here", 0);
    leave(raw);
    forget(&broker, &id);
}

/// [MQTT-3.1.2-5]: QoS 1 and 2 messages that arrive while the client is away
/// are delivered when it comes back, in order; QoS 0 ones are not kept.
#[test]
fn qos_1_and_2_are_queued_offline_and_qos_0_is_not() {
    let broker = TestBroker::start();
    let id = unique_id("q");
    let t = unique_topic("q");
    let marker = format!("{t}-marker");
    let mut raw = resume(&broker, &id, false);
    raw.subscribe(1, &[(&t, 2)], &[2]);
    leave(raw);

    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    let sent = [
        (QoS::AtLeastOnce, "a"),
        (QoS::ExactlyOnce, "b"),
        (QoS::AtMostOnce, "zero"),
        (QoS::AtLeastOnce, "c"),
        (QoS::ExactlyOnce, "d"),
        (QoS::AtLeastOnce, "e"),
    ];
    for (qos, payload) in sent {
        publisher.publish_done(&t, qos, false, payload);
    }

    let (mut sub, connack) = Mqtt::connect_with(broker.addr(), &id, |o| {
        o.set_clean_session(false);
    });
    assert!(connack.session_present);
    for (qos, payload) in sent.iter().filter(|(q, _)| *q != QoS::AtMostOnce) {
        let got = sub.expect(&t, payload.as_bytes());
        assert_eq!(got.qos, *qos, "{got:?}");
    }
    sub.subscribe(&marker, QoS::AtLeastOnce);
    let rest = sub.drain_until_marker(&marker);
    assert!(rest.is_empty(), "QoS 0 or extra messages: {rest:?}");
    sub.disconnect();
    forget(&broker, &id);
}

/// [MQTT-4.4.0-1]: a QoS 1 message sent and not acknowledged before the
/// connection ended is sent again on reconnect, same id, with DUP set
/// [MQTT-3.3.1-1].
#[test]
fn unacknowledged_qos_1_is_resent_with_dup() {
    let broker = TestBroker::start();
    let id = unique_id("u");
    let t = unique_topic("u");
    let mut raw = resume(&broker, &id, false);
    raw.subscribe(1, &[(&t, 1)], &[1]);
    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
    publisher.send(&publish(&t, b"ack me", 1, false, Some(1)));
    publisher.expect(&puback(1));

    let first = raw.read_packet();
    assert_eq!(
        first.first(),
        Some(&0x32),
        "first delivery: {}",
        hex(&first)
    );
    let first = parse_publish(&first).unwrap();
    leave(raw);

    let mut raw = resume(&broker, &id, true);
    let again = raw.read_packet();
    assert_eq!(again.first(), Some(&0x3A), "DUP and QoS 1: {}", hex(&again));
    let again = parse_publish(&again).unwrap();
    assert_eq!(
        (again.id, again.topic.as_slice(), again.payload.as_slice()),
        (first.id, t.as_bytes(), &b"ack me"[..])
    );
    raw.send(&puback(again.id.unwrap()));
    raw.ping();
    leave(raw);

    // Acknowledged now: not sent a third time.
    let mut raw = resume(&broker, &id, true);
    raw.expect_silence(std::time::Duration::from_millis(300));
    leave(raw);
    forget(&broker, &id);
}

/// The same for QoS 2 before PUBREC: the PUBLISH is resent with DUP.
#[test]
fn unacknowledged_qos_2_is_resent_with_dup() {
    let broker = TestBroker::start();
    let id = unique_id("u");
    let t = unique_topic("u");
    let mut raw = resume(&broker, &id, false);
    raw.subscribe(1, &[(&t, 2)], &[2]);
    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
    publisher.send(&publish(&t, b"exactly", 2, false, Some(1)));
    publisher.expect(&pubrec(1));
    publisher.send(&pubrel(1));
    publisher.expect(&pubcomp(1));

    let first = raw.expect_message(&t, b"exactly", 2);
    assert!(!first.dup);
    leave(raw);

    let mut raw = resume(&broker, &id, true);
    let again = raw.expect_message(&t, b"exactly", 2);
    assert!(again.dup, "{again:?}");
    assert_eq!(again.id, first.id);
    let id2 = again.id.unwrap();
    raw.send(&pubrec(id2));
    raw.expect(&pubrel(id2));
    raw.send(&pubcomp(id2));
    raw.ping();
    leave(raw);
    forget(&broker, &id);
}

/// [MQTT-4.4.0-1]: after PUBREC, the broker resends PUBREL (not the PUBLISH)
/// on reconnect, and the message is not delivered twice.
#[test]
fn pubrel_is_resent_after_reconnect() {
    let broker = TestBroker::start();
    let id = unique_id("r");
    let t = unique_topic("r");
    let mut raw = resume(&broker, &id, false);
    raw.subscribe(1, &[(&t, 2)], &[2]);
    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
    publisher.send(&publish(&t, b"half way", 2, false, Some(1)));
    publisher.expect(&pubrec(1));
    publisher.send(&pubrel(1));
    publisher.expect(&pubcomp(1));

    let got = raw.expect_message(&t, b"half way", 2);
    let pid = got.id.unwrap();
    raw.send(&pubrec(pid));
    raw.expect(&pubrel(pid));
    leave(raw);

    let mut raw = resume(&broker, &id, true);
    raw.expect(&pubrel(pid));
    raw.send(&pubcomp(pid));
    raw.ping();
    leave(raw);
    forget(&broker, &id);
}

/// [MQTT-3.1.2-6]: clean session 1 discards any previous session (CONNACK
/// session present 0), and its own state is discarded when it ends.
#[test]
fn clean_session_discards_the_session() {
    let broker = TestBroker::start();
    let id = unique_id("c");
    let t = unique_topic("c");
    let marker = format!("{t}-marker");
    let mut raw = resume(&broker, &id, false);
    raw.subscribe(1, &[(&t, 1)], &[1]);
    leave(raw);

    // Something is queued for the old session; it must be dropped with it.
    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish_done(&t, QoS::AtLeastOnce, false, "for the old session");

    let mut raw = Raw::tcp(broker.addr());
    raw.send(&Connect::new(&id).clean(true).bytes());
    raw.expect(&[0x20, 0x02, 0x00, 0x00]);
    raw.subscribe(2, &[(&marker, 0)], &[0]);
    publisher.publish_done(&t, QoS::AtLeastOnce, false, "not subscribed");
    publisher.publish(&marker, QoS::AtMostOnce, false, "end");
    let got = raw.collect_until(&marker, b"end");
    assert!(got.is_empty(), "{got:?}");
    leave(raw);

    let raw = resume(&broker, &id, false);
    leave(raw);
    forget(&broker, &id);
}

/// sol-only: `max_queued_messages` bounds what waits for an offline client.
/// With 3 queued and 2 in flight at most, 10 messages sent while away come
/// back as an in-order run of 3 to 5 of them, and the broker goes on.
#[test]
fn offline_queue_is_bounded() {
    let Some(broker) = TestBroker::with(|c| {
        c.max_queued_messages = 3;
        c.max_inflight_messages = 2;
    }) else {
        return;
    };
    let id = unique_id("b");
    let t = unique_topic("b");
    let mut raw = resume(&broker, &id, false);
    raw.subscribe(1, &[(&t, 1)], &[1]);
    leave(raw);

    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    for n in 0..10 {
        publisher.publish_done(&t, QoS::AtLeastOnce, false, n.to_string());
    }

    let mut raw = resume(&broker, &id, true);
    let mut got = Vec::new();
    while let Some(packet) = raw.read_packet_within(std::time::Duration::from_millis(300)) {
        let msg = parse_publish(&packet).unwrap_or_else(|| panic!("{}", hex(&packet)));
        raw.send(&puback(msg.id.unwrap()));
        got.push(
            String::from_utf8(msg.payload)
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    assert!((3..=5).contains(&got.len()), "kept {got:?}");
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "not an in-order run: {got:?}"
    );
    assert!(
        got[0] == 0 || *got.last().unwrap() == 9,
        "neither the oldest nor the newest: {got:?}"
    );
    leave(raw);
    forget(&broker, &id);
}
