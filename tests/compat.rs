//! Two places where sol reads the wire as mosquitto does, as raw bytes
//! against a real broker: the DUP bit an MQTT 3.1 client may set on a
//! PUBREL it sends again, and how deep a topic or filter may be.

mod common;

use std::time::Duration;

use common::*;

/// PUBREL for `id` with DUP set: first byte 0x6A, as MQTT 3.1 resends it.
fn pubrel_dup(id: u16) -> Vec<u8> {
    let [hi, lo] = id.to_be_bytes();
    vec![0x6A, 0x02, hi, lo]
}

/// A connection that spoke MQTT 3.1 (`MQIsdp`, level 3) in its CONNECT.
fn connected_v31(broker: &TestBroker) -> Raw {
    let mut c = Connect::new(&unique_id("v31"));
    c.protocol_name = b"MQIsdp".to_vec();
    c.level = 3;
    Raw::connected(broker.addr(), &c, false)
}

/// `base` followed by as many `/x` levels as make exactly `separators` `/`
/// characters in all.
fn topic_with_separators(base: &str, separators: usize) -> String {
    let more = separators - base.matches('/').count();
    format!("{base}{}", "/x".repeat(more))
}

/// Issue 17.3: a 3.1 client that resends PUBREL with DUP set gets PUBCOMP,
/// and the message is delivered once.
#[test]
fn a_v31_client_may_resend_pubrel_with_dup() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("rel");
        let mut subscriber = Raw::connected_clean(broker.addr(), &unique_id("sub"));
        subscriber.subscribe(1, &[(&t, 0)], &[0]);

        let mut v31 = connected_v31(&broker);
        v31.send(&publish(&t, b"once", 2, false, Some(7)));
        v31.expect(&pubrec(7));
        // The first PUBREL "lost": the client sends it again, DUP set.
        v31.send(&pubrel_dup(7));
        v31.expect(&pubcomp(7));
        // And once more after the handshake is over: still a PUBREL.
        v31.send(&pubrel_dup(7));
        v31.expect(&pubcomp(7));
        v31.ping();

        subscriber.expect_message(&t, b"once", 0);
        subscriber.expect_silence(Duration::from_millis(100));
    });
}

/// [MQTT-3.6.1-1]: from a 3.1.1 client, the same byte is a malformed
/// PUBREL and closes the connection.
#[test]
fn a_v311_client_setting_dup_on_pubrel_is_disconnected() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let t = unique_topic("rel");
        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("v311"));
        raw.send(&publish(&t, b"x", 2, false, Some(7)));
        raw.expect(&pubrec(7));
        raw.send(&pubrel_dup(7));
        raw.expect_closed();
    });
}

/// Issue 17.4: a filter and a topic name of 200 separators (201 levels)
/// are taken, as mosquitto takes them; 201 separators are refused the way
/// any malformed filter or topic is, by closing the connection.
#[test]
fn two_hundred_separators_are_taken_and_not_one_more() {
    let broker = TestBroker::start();
    with_bystander(&broker, || {
        let base = unique_topic("deep");
        let deepest = topic_with_separators(&base, 200);
        let too_deep = topic_with_separators(&base, 201);
        assert_eq!(deepest.matches('/').count(), 200);

        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("deep"));
        raw.subscribe(1, &[(&deepest, 1)], &[1]);
        raw.send(&publish(&deepest, b"deep", 0, false, None));
        raw.expect_message(&deepest, b"deep", 0);
        raw.send(&unsubscribe(2, &[&deepest]));
        raw.expect(&unsuback(2));

        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("deep"));
        raw.send(&subscribe(1, &[(&too_deep, 0)]));
        raw.expect_closed();

        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("deep"));
        raw.send(&unsubscribe(1, &[&too_deep]));
        raw.expect_closed();

        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("deep"));
        raw.send(&publish(&too_deep, b"too deep", 0, false, None));
        raw.expect_closed();

        // A filter of 200 separators ending in wildcards is taken too.
        let wild = format!("{}/#", topic_with_separators(&base, 199));
        let mut raw = Raw::connected_clean(broker.addr(), &unique_id("deep"));
        raw.subscribe(1, &[(&wild, 0)], &[0]);
        raw.send(&publish(&deepest, b"wild", 0, false, None));
        raw.expect_message(&deepest, b"wild", 0);
    });
}
