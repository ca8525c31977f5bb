//! Retained messages and wills.

mod common;

use common::*;

/// Clears a retained message so none is left behind on a shared broker.
fn clear(publisher: &mut Mqtt, topic: &str) {
    publisher.publish_done(topic, QoS::AtLeastOnce, true, Vec::new());
}

/// Subscribes and returns every PUBLISH (retained ones) before a marker.
fn retained_for(broker: &TestBroker, filter: &str, qos: QoS) -> Vec<rumqttc::Publish> {
    let marker = unique_topic("marker");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&marker, QoS::AtLeastOnce);
    sub.subscribe(filter, qos);
    let got = sub.drain_until_marker(&marker);
    sub.disconnect();
    got
}

// ---------------------------------------------------------------------------
// Retained
// ---------------------------------------------------------------------------

/// [MQTT-3.3.1-5], [MQTT-3.3.1-6], [MQTT-3.3.1-8]: a retained message is
/// stored and sent to a later subscriber with the retain flag set.
#[test]
fn retained_message_is_delivered_on_subscribe() {
    let broker = TestBroker::start();
    let t = unique_topic("r");
    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish_done(&t, QoS::AtLeastOnce, true, "kept");

    let got = retained_for(&broker, &t, QoS::AtLeastOnce);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload.as_ref(), b"kept");
    assert!(got[0].retain, "retain flag: {:?}", got[0]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    clear(&mut publisher, &t);
}

/// A retained QoS 0 message is stored too.
#[test]
fn retained_qos_0_message_is_stored() {
    let broker = TestBroker::start();
    let t = unique_topic("r");
    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish(&t, QoS::AtMostOnce, true, "zero");
    // Ordered behind the QoS 0 publish on the same connection.
    publisher.publish_done(&unique_topic("x"), QoS::AtLeastOnce, false, "sync");

    let got = retained_for(&broker, &t, QoS::ExactlyOnce);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].payload.as_ref(), got[0].qos, got[0].retain),
        (&b"zero"[..], QoS::AtMostOnce, true)
    );
    clear(&mut publisher, &t);
}

/// A new retained message replaces the old one [MQTT-3.3.1-5].
#[test]
fn retained_message_is_replaced() {
    let broker = TestBroker::start();
    let t = unique_topic("r");
    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish_done(&t, QoS::AtLeastOnce, true, "first");
    publisher.publish_done(&t, QoS::AtLeastOnce, true, "second");

    let got = retained_for(&broker, &t, QoS::AtLeastOnce);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload.as_ref(), b"second");
    clear(&mut publisher, &t);
}

/// [MQTT-3.3.1-10], [MQTT-3.3.1-11]: an empty retained payload deletes the
/// retained message and is forwarded to current subscribers as usual.
#[test]
fn empty_retained_payload_deletes() {
    let broker = TestBroker::start();
    let t = unique_topic("r");
    let mut live = Mqtt::connect(broker.addr(), &unique_id("l"));
    live.subscribe(&t, QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish_done(&t, QoS::AtLeastOnce, true, "doomed");
    publisher.publish_done(&t, QoS::AtLeastOnce, true, Vec::new());

    assert!(!live.expect(&t, b"doomed").retain);
    let empty = live.expect(&t, b"");
    assert!(!empty.retain, "{empty:?}");

    let got = retained_for(&broker, &t, QoS::AtLeastOnce);
    assert!(
        got.is_empty(),
        "deleted retained message delivered: {got:?}"
    );
}

/// Retained messages are matched by wildcard filters, each with the retain
/// flag; none is sent twice.
#[test]
fn retained_messages_match_wildcards() {
    let broker = TestBroker::start();
    let t = unique_topic("w");
    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    let stored = ["a", "a/b", "c", "a/b/c", "d/b"];
    for sub in stored {
        publisher.publish_done(&format!("{t}/{sub}"), QoS::AtLeastOnce, true, sub);
    }

    let cases: [(&str, &[&str]); 4] = [
        ("#", &["a", "a/b", "a/b/c", "c", "d/b"]),
        ("+", &["a", "c"]),
        ("+/b", &["a/b", "d/b"]),
        ("a/#", &["a", "a/b", "a/b/c"]),
    ];
    for (filter, expected) in cases {
        let got = retained_for(&broker, &format!("{t}/{filter}"), QoS::AtLeastOnce);
        assert!(got.iter().all(|p| p.retain), "{filter}: {got:?}");
        let mut payloads: Vec<String> = got
            .iter()
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect();
        payloads.sort();
        assert_eq!(payloads, expected, "retained messages for {filter}");
    }
    for sub in stored {
        clear(&mut publisher, &format!("{t}/{sub}"));
    }
}

/// A retained message is sent at the lower of its QoS and the subscription's.
#[test]
fn retained_message_qos_is_downgraded() {
    let broker = TestBroker::start();
    let t = unique_topic("r");
    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish_done(&t, QoS::ExactlyOnce, true, "two");

    let got = retained_for(&broker, &t, QoS::AtMostOnce);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].qos, got[0].retain), (QoS::AtMostOnce, true));
    let got = retained_for(&broker, &t, QoS::ExactlyOnce);
    assert_eq!((got[0].qos, got[0].retain), (QoS::ExactlyOnce, true));
    clear(&mut publisher, &t);
}

/// [MQTT-3.3.1-9]: a retained message forwarded to an existing subscription
/// has the retain flag cleared.
#[test]
fn live_forwarding_clears_the_retain_flag() {
    let broker = TestBroker::start();
    let t = unique_topic("r");
    let mut sub = Mqtt::connect(broker.addr(), &unique_id("s"));
    sub.subscribe(&t, QoS::AtLeastOnce);
    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish_done(&t, QoS::AtLeastOnce, true, "live");
    let got = sub.expect(&t, b"live");
    assert!(!got.retain, "{got:?}");
    clear(&mut publisher, &t);
}

/// [MQTT-3.8.4-3]: subscribing again to the same filter sends the retained
/// messages again.
#[test]
fn resubscribe_resends_retained() {
    let broker = TestBroker::start();
    let t = unique_topic("r");
    let mut publisher = Mqtt::connect(broker.addr(), &unique_id("p"));
    publisher.publish_done(&t, QoS::AtLeastOnce, true, "again");

    let mut raw = Raw::connected_clean(broker.addr(), &unique_id("s"));
    raw.subscribe(1, &[(&t, 0)], &[0]);
    let first = raw.expect_message(&t, b"again", 0);
    assert!(first.retain);
    raw.subscribe(2, &[(&t, 1)], &[1]);
    let second = raw.expect_message(&t, b"again", 1);
    assert!(second.retain);
    raw.send(&puback(second.id.unwrap()));
    raw.ping();
    clear(&mut publisher, &t);
}

// ---------------------------------------------------------------------------
// Will
// ---------------------------------------------------------------------------

/// A watcher subscribed at QoS 2 to a fresh will topic.
fn watcher(broker: &TestBroker) -> (Mqtt, String) {
    let topic = unique_topic("will");
    let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w"));
    watcher.subscribe(&topic, QoS::ExactlyOnce);
    (watcher, topic)
}

/// [MQTT-3.1.2-8]: the will is published when the connection closes without
/// DISCONNECT, at its QoS [MQTT-3.1.2-14].
#[test]
fn will_is_published_when_the_socket_closes() {
    let broker = TestBroker::start();
    let (mut watcher, topic) = watcher(&broker);
    for qos in [0u8, 1, 2] {
        let c = Connect::new(&unique_id("d")).will(
            &topic,
            format!("gone {qos}").as_bytes(),
            qos,
            false,
        );
        Raw::connected(broker.addr(), &c, false).drop_connection();
        let got = watcher.expect(&topic, format!("gone {qos}").as_bytes());
        assert_eq!((got.qos as u8, got.retain), (qos, false), "{got:?}");
    }
}

/// [MQTT-3.1.2-17]: a will with retain set is published as a retained
/// message.
#[test]
fn retained_will_is_kept() {
    let broker = TestBroker::start();
    let (mut watcher, topic) = watcher(&broker);
    let c = Connect::new(&unique_id("d")).will(&topic, b"last words", 1, true);
    Raw::connected(broker.addr(), &c, false).drop_connection();
    let live = watcher.expect(&topic, b"last words");
    assert!(!live.retain, "live copy keeps no retain flag: {live:?}");

    let got = retained_for(&broker, &topic, QoS::ExactlyOnce);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].payload.as_ref(), got[0].qos, got[0].retain),
        (&b"last words"[..], QoS::AtLeastOnce, true)
    );
    clear(&mut watcher, &topic);
}

/// [MQTT-3.1.2-8]: a protocol error closes the connection and publishes the
/// will.
#[test]
fn will_is_published_on_a_protocol_error() {
    let broker = TestBroker::start();
    let (mut watcher, topic) = watcher(&broker);
    let c = Connect::new(&unique_id("e")).will(&topic, b"broke the rules", 1, false);
    let mut raw = Raw::connected(broker.addr(), &c, false);
    // PUBLISH with QoS 3 [MQTT-3.3.1-4].
    raw.send(&publish_raw(b"x", b"", 3, false, false, Some(1)));
    raw.expect_closed();
    watcher.expect(&topic, b"broke the rules");
}

/// [MQTT-3.1.2-8]: keepalive expiry publishes the will.
#[test]
fn will_is_published_on_keepalive_expiry() {
    let broker = TestBroker::start();
    let (mut watcher, topic) = watcher(&broker);
    let c = Connect::new(&unique_id("k"))
        .keepalive(1)
        .will(&topic, b"timed out", 1, false);
    let mut raw = Raw::connected(broker.addr(), &c, false);
    // mosquitto 2.0 checks keepalives coarsely (up to 7 s for this one).
    let limit = if broker.is_sol() { 3 } else { 9 };
    raw.expect_closed_within(std::time::Duration::from_secs(limit));
    watcher.expect(&topic, b"timed out");
}

/// [MQTT-3.1.2-10], [MQTT-3.14.4-3]: after DISCONNECT the will is discarded.
#[test]
fn will_is_not_published_after_disconnect() {
    let broker = TestBroker::start();
    let (mut watcher, topic) = watcher(&broker);
    let c = Connect::new(&unique_id("n")).will(&topic, b"must not appear", 1, false);
    let mut raw = Raw::connected(broker.addr(), &c, false);
    raw.send(&DISCONNECT);
    raw.expect_closed();
    let got = watcher.drain_until_marker(&topic);
    assert!(got.is_empty(), "will published after DISCONNECT: {got:?}");
}

/// A DISCONNECT with reserved flags set is malformed [MQTT-2.2.2-2], not a
/// DISCONNECT: the connection closes and the will is published.
#[test]
fn will_is_published_after_a_malformed_disconnect() {
    let broker = TestBroker::start();
    let (mut watcher, topic) = watcher(&broker);
    let c = Connect::new(&unique_id("m")).will(&topic, b"malformed goodbye", 1, false);
    let mut raw = Raw::connected(broker.addr(), &c, false);
    raw.send(&[0xE1, 0x00]);
    raw.expect_closed();
    watcher.expect(&topic, b"malformed goodbye");
}

/// A takeover publishes the old connection's will unless the session goes
/// on (clean session 0 on both connections), as mosquitto does: each of the
/// four combinations, against the real broker.
#[test]
fn takeover_publishes_the_will_unless_both_sides_keep_the_session() {
    let broker = TestBroker::start();
    for (old_clean, new_clean) in [(false, false), (false, true), (true, false), (true, true)] {
        let topic = unique_topic("takeover-will");
        let mut watcher = Mqtt::connect(broker.addr(), &unique_id("w"));
        watcher.subscribe(&topic, QoS::AtMostOnce);
        let id = unique_id("twin");
        let old = Connect::new(&id)
            .clean(old_clean)
            .will(&topic, b"old", 0, false);
        let mut old = Raw::connected(broker.addr(), &old, false);
        let present = !old_clean && !new_clean;
        let mut new = Raw::connected(broker.addr(), &Connect::new(&id).clean(new_clean), present);
        old.expect_closed();
        // The will, if any, was routed before the new CONNACK was sent, so
        // before the watcher's marker.
        let wills: Vec<_> = watcher
            .drain_until_marker(&topic)
            .into_iter()
            .map(|p| p.payload.to_vec())
            .collect();
        let expected: Vec<Vec<u8>> = if present {
            vec![]
        } else {
            vec![b"old".to_vec()]
        };
        assert_eq!(
            wills, expected,
            "old clean {old_clean}, new clean {new_clean}"
        );
        // Leave no session behind.
        new.send(&DISCONNECT);
        if !new_clean {
            Raw::connected(broker.addr(), &Connect::new(&id), false).send(&DISCONNECT);
        }
        watcher.disconnect();
    }
}
