//! SUBSCRIBE, UNSUBSCRIBE and PUBLISH at every QoS: matching, SUBACK codes,
//! downgrades, ordering, exactly-once and the inflight window.

mod common;

use common::*;

fn topics(got: &[rumqttc::Publish]) -> Vec<&str> {
    got.iter().map(|p| p.topic.as_str()).collect()
}

/// `+` matches exactly one level, an empty one included.
#[test]
fn plus_matches_exactly_one_level() {
    let broker = TestBroker::start();
    let t = unique_topic("p");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&format!("{t}/+/x"), QoS::AtMostOnce);
    let marker = format!("{t}/marker");
    sub.subscribe(&marker, QoS::AtLeastOnce);
    for topic in ["a/x", "a/b/x", "x", "/x", "a/x/y", "a/y"] {
        sub.publish(&format!("{t}/{topic}"), QoS::AtMostOnce, false, "m");
    }
    let got = sub.drain_until_marker(&marker);
    assert_eq!(topics(&got), [format!("{t}/a/x"), format!("{t}//x")]);
}

/// `#` matches the parent level and every level below it [MQTT-4.7.1-2].
#[test]
fn hash_matches_the_parent_and_all_children() {
    let broker = TestBroker::start();
    let t = unique_topic("h");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&format!("{t}/a/#"), QoS::AtMostOnce);
    let marker = format!("{t}/marker");
    sub.subscribe(&marker, QoS::AtLeastOnce);
    for topic in ["a", "a/b", "a/b/c", "ab", "b/a", "a/"] {
        sub.publish(&format!("{t}/{topic}"), QoS::AtMostOnce, false, "m");
    }
    let got = sub.drain_until_marker(&marker);
    assert_eq!(
        topics(&got),
        [
            format!("{t}/a"),
            format!("{t}/a/b"),
            format!("{t}/a/b/c"),
            format!("{t}/a/")
        ]
    );
}

/// A filter that mixes both wildcards.
#[test]
fn plus_and_hash_combine() {
    let broker = TestBroker::start();
    let t = unique_topic("c");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&format!("{t}/+/b/#"), QoS::AtMostOnce);
    let marker = format!("{t}/marker");
    sub.subscribe(&marker, QoS::AtLeastOnce);
    for topic in ["a/b", "a/b/c/d", "a/c/b", "b"] {
        sub.publish(&format!("{t}/{topic}"), QoS::AtMostOnce, false, "m");
    }
    let got = sub.drain_until_marker(&marker);
    assert_eq!(topics(&got), [format!("{t}/a/b"), format!("{t}/a/b/c/d")]);
}

/// [MQTT-4.7.2-1]: `#` and `+/...` at the first level do not match topics
/// that start with `$`; a filter that names the `$` level does.
#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let broker = TestBroker::start();
    let top = format!("${}", unique_id("d"));
    let dollar = format!("{top}/x");

    let mut wild = Mqtt::connect(broker.addr(), &unique_id("w"));
    wild.subscribe("#", QoS::AtMostOnce);
    wild.subscribe("+/x", QoS::AtMostOnce);
    wild.subscribe("+/#", QoS::AtMostOnce);
    let mut named = Mqtt::connect(broker.addr(), &unique_id("n"));
    named.subscribe(&format!("{top}/#"), QoS::AtMostOnce);
    named.subscribe(&format!("{top}/+"), QoS::AtMostOnce);

    let publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish(&dollar, QoS::AtMostOnce, false, "dollar");
    let named_got = named.recv();
    assert_eq!(named_got.topic, dollar);

    // `#` sees the marker (and, on a shared broker, other tests' traffic).
    let marker = unique_topic("m");
    let got = wild.drain_until_marker_from(&publisher, &marker);
    let leaked: Vec<_> = got.iter().filter(|p| p.topic.starts_with('$')).collect();
    assert!(leaked.is_empty(), "wildcards matched $ topics: {leaked:?}");
}

/// SUBACK carries the granted QoS per filter, in order [MQTT-3.9.3-1].
#[test]
fn suback_grants_the_requested_qos_per_filter() {
    let broker = TestBroker::start();
    let t = unique_topic("s");
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("s"));
    raw.subscribe(
        0x1234,
        &[
            (&format!("{t}/two"), 2),
            (&format!("{t}/zero"), 0),
            (&format!("{t}/one/#"), 1),
        ],
        &[2, 0, 1],
    );
}

/// A message is delivered at the lower of its QoS and the subscription's
/// [MQTT-3.8.4-6], through a full client library in both directions.
#[test]
fn qos_is_the_minimum_of_publish_and_subscription() {
    let broker = TestBroker::start();
    let t = unique_topic("q");
    let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let mut subs: Vec<Mqtt> = qos
        .iter()
        .map(|q| {
            let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
            assert_eq!(sub.subscribe(&t, *q), vec![Some(*q)]);
            sub
        })
        .collect();
    let publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    for q in qos {
        publisher.publish(&t, q, false, format!("at {q:?}"));
    }
    for (sub, sub_qos) in subs.iter_mut().zip(qos) {
        for pub_qos in qos {
            let got = sub.expect(&t, format!("at {pub_qos:?}").as_bytes());
            assert_eq!(got.qos as u8, (pub_qos as u8).min(sub_qos as u8), "{got:?}");
            assert!(!got.retain);
        }
    }
}

/// The raw QoS 1 and QoS 2 flows, client to broker and broker to client.
#[test]
fn raw_qos_1_and_2_handshakes() {
    let broker = TestBroker::start();
    let t = unique_topic("r");
    let mut sub = Raw::connected_clean(broker.addr(), &unique_id("s"));
    sub.subscribe(1, &[(&t, 2)], &[2]);
    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));

    publisher.send(&publish(&t, b"one", 1, false, Some(10)));
    publisher.expect(&puback(10));
    let got = sub.expect_message(&t, b"one", 1);
    sub.send(&puback(got.id.unwrap()));

    publisher.send(&publish(&t, b"two", 2, false, Some(11)));
    publisher.expect(&pubrec(11));
    publisher.send(&pubrel(11));
    publisher.expect(&pubcomp(11));
    let got = sub.expect_message(&t, b"two", 2);
    assert!(!got.dup && !got.retain);
    let id = got.id.unwrap();
    assert_ne!(id, 0);
    sub.send(&pubrec(id));
    sub.expect(&pubrel(id));
    sub.send(&pubcomp(id));
    sub.ping();
}

/// 1000 QoS 1 messages from one publisher arrive in the order sent
/// [MQTT-4.6.0-2].
#[test]
fn thousand_qos_1_messages_arrive_in_order() {
    let broker = TestBroker::start();
    let t = unique_topic("o");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&t, QoS::AtLeastOnce);
    let publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    for n in 0..1000 {
        publisher.publish(&t, QoS::AtLeastOnce, false, n.to_string());
    }
    for n in 0..1000 {
        let got = sub.recv();
        assert_eq!(
            got.payload.as_ref(),
            n.to_string().as_bytes(),
            "message {n}"
        );
        assert_eq!(got.qos, QoS::AtLeastOnce);
    }
}

/// [MQTT-4.3.3-2], BAD_INPUTS 32: a QoS 2 PUBLISH sent again before PUBREL
/// is acknowledged again and not delivered again; PUBREL completes it.
#[test]
fn qos_2_duplicate_before_pubrel_is_delivered_once() {
    let broker = TestBroker::start();
    let t = unique_topic("x");
    let marker = format!("{t}/marker");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&t, QoS::ExactlyOnce);
    sub.subscribe(&marker, QoS::AtLeastOnce);

    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
    publisher.send(&publish(&t, b"once", 2, false, Some(7)));
    publisher.expect(&pubrec(7));
    publisher.send(&publish_raw(t.as_bytes(), b"once", 2, false, true, Some(7)));
    publisher.expect(&pubrec(7));
    publisher.send(&pubrel(7));
    publisher.expect(&pubcomp(7));
    publisher.send(&publish(&marker, b"end", 0, false, None));

    let got = sub.collect_until(&marker, b"end");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].payload.as_ref(), got[0].qos),
        (&b"once"[..], QoS::ExactlyOnce)
    );
}

/// BAD_INPUTS 32: PUBREL for an id the broker does not know still gets
/// PUBCOMP (it may be a PUBREL resent after a reconnect).
#[test]
fn pubrel_for_an_unknown_id_gets_pubcomp() {
    let broker = TestBroker::start();
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("u"));
    raw.send(&pubrel(99));
    raw.expect(&pubcomp(99));
    raw.ping();
}

/// Subscribing again to the same filter replaces the subscription's QoS
/// [MQTT-3.8.4-3]: one copy, at the new QoS.
#[test]
fn resubscribe_replaces_the_qos() {
    let broker = TestBroker::start();
    let t = unique_topic("r");
    let marker = format!("{t}/marker");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&marker, QoS::AtLeastOnce);
    assert_eq!(
        sub.subscribe(&t, QoS::AtMostOnce),
        vec![Some(QoS::AtMostOnce)]
    );
    assert_eq!(
        sub.subscribe(&t, QoS::ExactlyOnce),
        vec![Some(QoS::ExactlyOnce)]
    );
    sub.publish_done(&t, QoS::ExactlyOnce, false, "after");
    let got = sub.drain_until_marker(&marker);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].qos, QoS::ExactlyOnce);

    assert_eq!(
        sub.subscribe(&t, QoS::AtLeastOnce),
        vec![Some(QoS::AtLeastOnce)]
    );
    sub.publish_done(&t, QoS::ExactlyOnce, false, "lowered");
    let got = sub.drain_until_marker(&marker);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
}

/// Overlapping subscriptions deliver one copy, at the highest QoS among them
/// [MQTT-3.3.5-1]. (The standard also allows one copy per subscription.)
#[test]
fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let Some(broker) = TestBroker::sol_only("mosquitto 2.0 sends one copy, not at the highest QoS")
    else {
        return;
    };
    let t = unique_topic("v");
    let marker = format!("{t}/marker");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&marker, QoS::AtMostOnce);
    sub.subscribe(&format!("{t}/#"), QoS::AtMostOnce);
    sub.subscribe(&format!("{t}/+/c"), QoS::ExactlyOnce);
    sub.subscribe(&format!("{t}/b/c"), QoS::AtLeastOnce);
    let publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish(&format!("{t}/b/c"), QoS::ExactlyOnce, false, "one copy");
    publisher.publish(
        &format!("{t}/b/c"),
        QoS::AtLeastOnce,
        false,
        "one copy at 1",
    );
    let got = sub.drain_until_marker_from(&publisher, &marker);
    let got: Vec<_> = got.iter().filter(|p| p.topic != marker).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].payload.as_ref(), got[0].qos),
        (&b"one copy"[..], QoS::ExactlyOnce)
    );
    assert_eq!(
        (got[1].payload.as_ref(), got[1].qos),
        (&b"one copy at 1"[..], QoS::AtLeastOnce)
    );
}

/// After UNSUBSCRIBE (acknowledged with UNSUBACK [MQTT-3.10.4-4]) nothing
/// more is delivered for that filter, and other subscriptions stay.
#[test]
fn unsubscribe_stops_delivery() {
    let broker = TestBroker::start();
    let t = unique_topic("u");
    // Outside `{t}/+`, so the marker has one subscription.
    let marker = format!("{t}-marker");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&marker, QoS::AtLeastOnce);
    sub.subscribe(&format!("{t}/a"), QoS::AtLeastOnce);
    sub.subscribe(&format!("{t}/+"), QoS::AtLeastOnce);
    sub.unsubscribe(&format!("{t}/a"));
    sub.publish(&format!("{t}/a"), QoS::AtLeastOnce, false, "via plus");
    let got = sub.drain_until_marker(&marker);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload.as_ref(), b"via plus");

    sub.unsubscribe(&format!("{t}/+"));
    sub.publish(&format!("{t}/a"), QoS::AtLeastOnce, false, "nobody");
    let got = sub.drain_until_marker(&marker);
    assert!(got.is_empty(), "{got:?}");
}

/// UNSUBACK even for a filter that was never subscribed [MQTT-3.10.4-5].
#[test]
fn unsuback_for_an_unknown_filter() {
    let broker = TestBroker::start();
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("u"));
    let t = unique_topic("u");
    raw.send(&unsubscribe(
        0x0102,
        &[&format!("{t}/never"), &format!("{t}/+")],
    ));
    raw.expect(&unsuback(0x0102));
    raw.ping();
}

/// A client may publish to a topic it is subscribed to and get it back,
/// and its own PUBACK comes before the copy of its message, as mosquitto
/// sends them.
#[test]
fn a_client_receives_its_own_publish_after_its_puback() {
    let broker = TestBroker::start();
    let t = unique_topic("m");
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("m"));
    raw.subscribe(3, &[(&t, 1)], &[1]);
    raw.send(&publish(&t, b"echo", 1, false, Some(4)));
    raw.expect(&puback(4));
    let got = raw.expect_publish();
    assert_eq!(
        (got.topic.as_slice(), got.payload.as_slice()),
        (t.as_bytes(), &b"echo"[..])
    );
}

/// mosquitto's `02-subpub-qos2` conversation: subscribe at QoS 2, publish
/// at QoS 2 to the same topic; the PUBREC is the next packet, then the
/// delivery, whose handshake runs beside the publisher's own.
#[test]
fn a_qos_2_publisher_subscribed_to_itself_gets_pubrec_first() {
    let broker = TestBroker::start();
    let t = unique_topic("q2");
    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("q2"));
    raw.subscribe(1, &[(&t, 2)], &[2]);
    raw.send(&publish(&t, b"message", 2, false, Some(2)));
    raw.expect(&pubrec(2));
    let got = raw.expect_publish();
    assert_eq!((got.qos, got.payload.as_slice()), (2, &b"message"[..]));
    let delivered = got.id.expect("a QoS 2 delivery has an id");
    raw.send(&pubrel(2));
    raw.expect(&pubcomp(2));
    raw.send(&pubrec(delivered));
    raw.expect(&pubrel(delivered));
    raw.send(&pubcomp(delivered));
    raw.ping();
}

/// A large payload (1 MB, under the default 2 MB limit) passes intact.
#[test]
fn large_payload_passes_intact() {
    let broker = TestBroker::start();
    let t = unique_topic("l");
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut sub = Raw::connected_clean(broker.addr(), &unique_id("s"));
    sub.subscribe(1, &[(&t, 0)], &[0]);
    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
    publisher.send(&publish(&t, &payload, 1, false, Some(1)));
    publisher.expect(&puback(1));
    let got = sub.expect_publish();
    assert_eq!(got.topic, t.as_bytes());
    assert!(
        got.payload == payload,
        "payload of {} bytes differs",
        got.payload.len()
    );
}

/// sol-only: with `max_inflight_messages` 2, a subscriber that does not
/// acknowledge gets two QoS 1 messages and no more; each PUBACK lets one more
/// through, in order.
#[test]
fn inflight_window_holds_back_unacknowledged_messages() {
    let Some(broker) = TestBroker::with(|c| c.max_inflight_messages = 2) else {
        return;
    };
    let t = unique_topic("i");
    let mut sub = Raw::connected_clean(broker.addr(), &unique_id("s"));
    sub.subscribe(1, &[(&t, 1)], &[1]);
    let mut publisher = Raw::connected_clean(broker.addr(), &unique_id("p"));
    for n in 0..5u16 {
        publisher.send(&publish(
            &t,
            format!("m{n}").as_bytes(),
            1,
            false,
            Some(n + 1),
        ));
        publisher.expect(&puback(n + 1));
    }
    let first = sub.expect_message(&t, b"m0", 1);
    let second = sub.expect_message(&t, b"m1", 1);
    sub.expect_silence(std::time::Duration::from_millis(300));

    sub.send(&puback(first.id.unwrap()));
    let third = sub.expect_message(&t, b"m2", 1);
    sub.expect_silence(std::time::Duration::from_millis(200));

    sub.send(&puback(second.id.unwrap()));
    sub.send(&puback(third.id.unwrap()));
    let fourth = sub.expect_message(&t, b"m3", 1);
    let fifth = sub.expect_message(&t, b"m4", 1);
    sub.send(&puback(fourth.id.unwrap()));
    sub.send(&puback(fifth.id.unwrap()));
    sub.ping();
}
